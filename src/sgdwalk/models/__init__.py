"""Models: the study's MLP, VGG-11 and pre-activation ResNet, a GPT; registry and init.

    model = build_model(cfg.model, input_shape=(3, 32, 32), num_classes=10)

Every model is a plain `nn.Module` with no in-place activations and no module state
outside its parameters and buffers, so `torch.func.functional_call`, `torch.func.jvp` and
double backward (Hessian-vector products) work through it; through a GPT, inside
`with math_attention(model):` (fused attention has no second derivatives).
"""

from sgdwalk.models import gpt, mlp, resnet, vgg  # noqa: F401  (imported to register builders)
from sgdwalk.models.gpt import GPT, math_attention
from sgdwalk.models.init import init_study
from sgdwalk.models.registry import MODELS, build_model, count_parameters, register_model

__all__ = [
    "GPT",
    "MODELS",
    "build_model",
    "count_parameters",
    "init_study",
    "math_attention",
    "register_model",
]
