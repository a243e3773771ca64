"""ResNet encoders for SSL-backbone FL: a SimCLR network (encoder + projection) and task heads.

:class:`ResNetEncoder` is ResNet-18 (basic blocks, ``[2, 2, 2, 2]``) or ResNet-50
(bottleneck blocks, ``[3, 4, 6, 3]``) of He et al. (2016), ending in global average pooling;
it maps ``[N, C, H, W]`` images to ``[N, feature_dim]`` representations. The base ``width``
(64 in the paper) is configurable, so tests can use tiny networks.

Design choices (kept here so that reviewers find them next to the code):

- **Small-image stem.** For 32-96 px inputs the ImageNet stem (7x7 conv with stride 2, then
  a 3x3 max-pool: a 4x reduction before the first stage) throws away most of the image, so
  ``small_stem=True`` (the default) uses a single 3x3 convolution with stride 1 and no
  max-pool, as SimCLR does for CIFAR-10 (Chen et al. 2020, appendix B.9).
  ``small_stem=False`` gives the ImageNet stem.
- **Normalisation: GroupNorm by default.** BatchNorm with running statistics writes its
  buffers in ``forward``, which ``torch.func.functional_call`` + ``vmap`` (the batched
  engine) cannot do. GroupNorm normalises each sample on its own, so a sample's
  representation does not depend on the other images in its batch: the batched engine,
  which pads a client whose epoch has ended, gives the per-client loop's numbers, and the
  features used to train and evaluate the task heads do not depend on how the evaluation set
  is batched. It is also the normalisation recommended for non-IID FedAvg (Hsieh et al.,
  ICML 2020), and our two clients hold different datasets. ``norm="batch"`` gives
  ``BatchNorm2d(track_running_stats=False)`` (batch statistics in training *and* evaluation)
  for comparison with SimCLR's original BatchNorm; with it, a sample's output depends on its
  batch.
- **Explicit initialisation.** Every constructor takes ``seed`` (an int or a
  ``torch.Generator``) and draws its parameters from a private generator: convolutions
  ``kaiming_normal(fan_out, relu)`` as in torchvision's ResNet, linear layers
  ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (PyTorch's default), norm weights 1 and biases 0.
- **"The last block"** (the part a task head may fine-tune) is the last stage, ``layer4``
  (conv5_x in the ResNet paper); :meth:`ResNetEncoder.forward_to` and
  :meth:`ResNetEncoder.forward_from` split the encoder there, so that the frozen part can be
  run once and its output cached.

References
----------
.. [1] K. He, X. Zhang, S. Ren, J. Sun, "Deep residual learning for image recognition",
   CVPR 2016.
.. [2] T. Chen, S. Kornblith, M. Norouzi, G. Hinton, "A simple framework for contrastive
   learning of visual representations", ICML 2020.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from qkd.errors import ParameterError, UnknownNameError

__all__ = [
    "DEPTHS",
    "LAST_BLOCK",
    "NORMS",
    "Classifier",
    "ProjectionHead",
    "ResNetEncoder",
    "SimCLRNet",
    "init_parameters",
    "resnet18",
    "resnet50",
]

#: Supported depths: blocks per stage and whether they are bottlenecks.
DEPTHS: dict[int, tuple[tuple[int, int, int, int], bool]] = {
    18: ((2, 2, 2, 2), False),
    50: ((3, 4, 6, 3), True),
}
NORMS: tuple[str, ...] = ("group", "batch")
#: Name of the encoder's last stage, the part a task head may fine-tune.
LAST_BLOCK = "layer4"

Seed = int | torch.Generator


def _generator(seed: Seed) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ParameterError("seed", seed, "an int >= 0 or a torch.Generator")
    return torch.Generator().manual_seed(seed)


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParameterError(name, value, "a positive integer")
    return value


def _group_count(channels: int, max_groups: int) -> int:
    """Largest divisor of ``channels`` that is ``<= max_groups``."""
    return max(g for g in range(1, min(channels, max_groups) + 1) if channels % g == 0)


def _norm(kind: str, channels: int, max_groups: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(_group_count(channels, max_groups), channels)
    return nn.BatchNorm2d(channels, track_running_stats=False)


def init_parameters(module: nn.Module, seed: Seed) -> nn.Module:
    """Draw ``module``'s parameters in place from an explicit seed; return ``module``.

    Convolutions: ``N(0, 2 / fan_out)`` (Kaiming normal, ReLU gain, fan-out mode), biases
    0; linear layers: weight and bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``; GroupNorm and
    BatchNorm: weight 1, bias 0. Modules are visited in ``modules()`` order, so the same seed
    gives the same parameters.

    Parameters
    ----------
    module : torch.nn.Module
        Any module built from ``Conv2d``, ``Linear``, ``GroupNorm``, ``BatchNorm2d``.
    seed : int or torch.Generator
        Randomness.

    Examples
    --------
    >>> a, b = init_parameters(nn.Linear(3, 2), 1), init_parameters(nn.Linear(3, 2), 1)
    >>> bool(torch.equal(a.weight, b.weight))
    True
    """
    gen = _generator(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
                m.weight.normal_(0.0, math.sqrt(2.0 / fan_out), generator=gen)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.in_features)
                m.weight.uniform_(-bound, bound, generator=gen)
                if m.bias is not None:
                    m.bias.uniform_(-bound, bound, generator=gen)
            elif isinstance(m, nn.GroupNorm | nn.BatchNorm2d) and m.weight is not None:
                m.weight.fill_(1.0)
                m.bias.fill_(0.0)
    return module


class _BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, norm: str, groups: int) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.norm1 = _norm(norm, planes, groups)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.norm2 = _norm(norm, planes, groups)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(norm, cout, groups)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, norm: str, groups: int) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.norm1 = _norm(norm, planes, groups)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.norm2 = _norm(norm, planes, groups)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.norm3 = _norm(norm, cout, groups)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(norm, cout, groups)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = F.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNetEncoder(nn.Module):
    """ResNet-18 / ResNet-50 trunk with global average pooling (no classifier).

    Parameters
    ----------
    depth : int
        18 (basic blocks) or 50 (bottleneck blocks); see :data:`DEPTHS`.
    width : int
        Channels of the stem and the first stage (64 in the paper); stage ``k`` has
        ``width * 2**(k-1)`` planes.
    small_stem : bool
        3x3 stride-1 convolution without max-pool (for 32-96 px images) instead of the
        ImageNet 7x7 stride-2 convolution + max-pool.
    in_channels : int
        Input channels.
    norm : str
        ``"group"`` (GroupNorm) or ``"batch"`` (BatchNorm without running statistics).
    norm_groups : int
        Largest number of GroupNorm groups (the largest divisor of the channel count that
        does not exceed it is used).
    seed : int or torch.Generator
        Initialisation randomness (see :func:`init_parameters`).

    Attributes
    ----------
    feature_dim : int
        Size of the representation: ``8 * width`` (ResNet-18) or ``32 * width`` (ResNet-50).

    Examples
    --------
    >>> enc = ResNetEncoder(18, width=4)
    >>> tuple(enc(torch.zeros(2, 3, 16, 16)).shape)
    (2, 32)
    """

    def __init__(
        self,
        depth: int = 18,
        *,
        width: int = 64,
        small_stem: bool = True,
        in_channels: int = 3,
        norm: str = "group",
        norm_groups: int = 32,
        seed: Seed = 0,
    ) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise UnknownNameError("depth", depth, tuple(str(d) for d in DEPTHS))
        if norm not in NORMS:
            raise UnknownNameError("norm", norm, NORMS)
        width = _positive("width", width)
        in_channels = _positive("in_channels", in_channels)
        norm_groups = _positive("norm_groups", norm_groups)
        blocks, bottleneck = DEPTHS[depth]
        block = _Bottleneck if bottleneck else _BasicBlock
        self.depth = depth
        self.width = width
        self.small_stem = small_stem
        self.norm = norm
        if small_stem:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
                _norm(norm, width, norm_groups),
                nn.ReLU(),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 7, 2, 3, bias=False),
                _norm(norm, width, norm_groups),
                nn.ReLU(),
                nn.MaxPool2d(3, 2, 1),
            )
        cin = width
        stages = []
        for k, n in enumerate(blocks):
            planes = width * 2**k
            layers = []
            for j in range(n):
                stride = 2 if (k > 0 and j == 0) else 1
                layers.append(block(cin, planes, stride, norm, norm_groups))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.feature_dim = cin
        init_parameters(self, seed)

    def _stages(self) -> tuple[nn.Module, ...]:
        return (self.stem, self.layer1, self.layer2, self.layer3, self.layer4)

    def forward_to(self, x: torch.Tensor, stage: int) -> torch.Tensor:
        """Feature map after the stem (``stage=0``) or after ``layer{stage}`` (1..4)."""
        if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage <= 4:
            raise ParameterError("stage", stage, "an integer in [0, 4]")
        for module in self._stages()[: stage + 1]:
            x = module(x)
        return x

    def forward_from(self, h: torch.Tensor, stage: int) -> torch.Tensor:
        """Representation from the output ``h`` of :meth:`forward_to` at ``stage``."""
        if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage <= 4:
            raise ParameterError("stage", stage, "an integer in [0, 4]")
        for module in self._stages()[stage + 1 :]:
            h = module(h)
        return torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Representation ``[N, feature_dim]`` of images ``[N, C, H, W]``."""
        return self.forward_from(self.forward_to(x, 0), 0)


def resnet18(**kwargs: object) -> ResNetEncoder:
    """:class:`ResNetEncoder` with ``depth=18`` (keyword arguments as the class)."""
    return ResNetEncoder(18, **kwargs)  # type: ignore[arg-type]


def resnet50(**kwargs: object) -> ResNetEncoder:
    """:class:`ResNetEncoder` with ``depth=50`` (keyword arguments as the class)."""
    return ResNetEncoder(50, **kwargs)  # type: ignore[arg-type]


class ProjectionHead(nn.Module):
    """SimCLR's projection ``g``: linear -> ReLU -> linear (Chen et al. 2020, sec. 2.1).

    Parameters
    ----------
    in_dim : int
        Size of the encoder's representation.
    hidden_dim : int, optional
        Hidden width; default ``in_dim`` (as in SimCLR).
    out_dim : int
        Size of the projection the contrastive loss sees (128 in SimCLR).
    seed : int or torch.Generator
        Initialisation randomness.
    """

    def __init__(
        self, in_dim: int, hidden_dim: int | None = None, out_dim: int = 128, *, seed: Seed = 0
    ) -> None:
        super().__init__()
        in_dim = _positive("in_dim", in_dim)
        hidden = in_dim if hidden_dim is None else _positive("hidden_dim", hidden_dim)
        out_dim = _positive("out_dim", out_dim)
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, out_dim)
        init_parameters(self, seed)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Projection ``z`` of representations ``h``."""
        return self.fc2(F.relu(self.fc1(h)))


class SimCLRNet(nn.Module):
    """Encoder ``f`` followed by the projection head ``g``; ``forward(x) = g(f(x))``.

    Parameters
    ----------
    encoder : ResNetEncoder
        The backbone (its parameters are named ``encoder.*``).
    projection : ProjectionHead
        The head (``projection.*``); thrown away after pretraining.

    Examples
    --------
    >>> enc = ResNetEncoder(18, width=4)
    >>> net = SimCLRNet(enc, ProjectionHead(enc.feature_dim, out_dim=8))
    >>> tuple(net(torch.zeros(3, 3, 8, 8)).shape)
    (3, 8)
    """

    def __init__(self, encoder: ResNetEncoder, projection: ProjectionHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.projection = projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projections ``[N, out_dim]`` of images ``[N, C, H, W]``."""
        return self.projection(self.encoder(x))


class Classifier(nn.Module):
    """A task model: encoder + linear head; ``forward(x)`` returns logits.

    Parameters
    ----------
    encoder : ResNetEncoder
        The backbone (``encoder.*``), pretrained or fresh.
    num_classes : int
        Classes of the task (the head is ``head.weight`` / ``head.bias``).
    seed : int or torch.Generator
        Initialisation of the head.
    """

    def __init__(self, encoder: ResNetEncoder, num_classes: int, *, seed: Seed = 0) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.feature_dim, _positive("num_classes", num_classes))
        init_parameters(self.head, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]``."""
        return self.head(self.encoder(x))
