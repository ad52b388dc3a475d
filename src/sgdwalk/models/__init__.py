"""Models of the study: MLP, VGG-11 and pre-activation ResNet, their registry and init.

    model = build_model(cfg.model, input_shape=(3, 32, 32), num_classes=10)

Every model is a plain `nn.Module` with no in-place activations and no module state
outside its parameters and buffers, so `torch.func.functional_call`, `torch.func.jvp` and
double backward (Hessian-vector products) work through it.
"""

from sgdwalk.models import mlp, resnet, vgg  # noqa: F401  (imported to register the builders)
from sgdwalk.models.init import init_study
from sgdwalk.models.registry import MODELS, build_model, count_parameters, register_model

__all__ = ["MODELS", "build_model", "count_parameters", "init_study", "register_model"]
