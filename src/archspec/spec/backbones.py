"""Feature widths of torchvision classification backbones, known without importing torchvision.

The width is that of the pooled features once the classifier is removed (what the ``torchvision``
encoder outputs). A build dry-run proves each figure; a backbone missing from this table is still
buildable by name but its width is deferred to build time.
"""

from __future__ import annotations

_W = {}


def _family(width: int, *names: str) -> None:
    for n in names:
        _W[n] = width


_family(512, "resnet18", "resnet34", "squeezenet1_0", "squeezenet1_1", "vgg11", "vgg11_bn", "vgg13",
        "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "maxvit_t")
_family(2048, "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
        "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2", "inception_v3", "shufflenet_v2_x2_0")
_family(1280, "mobilenet_v2", "efficientnet_b0", "efficientnet_b1", "efficientnet_v2_s",
        "efficientnet_v2_m", "efficientnet_v2_l", "mnasnet0_5", "mnasnet0_75", "mnasnet1_0",
        "mnasnet1_3", "vit_h_14")
_family(576, "mobilenet_v3_small")
_family(960, "mobilenet_v3_large")
_family(1408, "efficientnet_b2")
_family(1536, "efficientnet_b3", "convnext_large")
_family(1792, "efficientnet_b4")
_family(2304, "efficientnet_b6")
_family(2560, "efficientnet_b7")
_family(1024, "densenet121", "convnext_base", "swin_b", "swin_v2_b", "vit_l_16", "vit_l_32",
        "googlenet", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5")
_family(2208, "densenet161")
_family(1664, "densenet169")
_family(1920, "densenet201")
_family(768, "convnext_tiny", "convnext_small", "swin_t", "swin_s", "swin_v2_t", "swin_v2_s",
        "vit_b_16", "vit_b_32")
_W["efficientnet_b5"] = 2048
_W["alexnet"] = 256
# RegNets: the width of the last stage
_W.update({"regnet_x_400mf": 400, "regnet_x_800mf": 672, "regnet_x_1_6gf": 912, "regnet_x_3_2gf": 1008,
           "regnet_x_8gf": 1920, "regnet_x_16gf": 2048, "regnet_x_32gf": 2520, "regnet_y_400mf": 440,
           "regnet_y_800mf": 784, "regnet_y_1_6gf": 888, "regnet_y_3_2gf": 1512, "regnet_y_8gf": 2016,
           "regnet_y_16gf": 3024, "regnet_y_32gf": 3712, "regnet_y_128gf": 7392})

#: backbones whose input size is fixed by their architecture (as built untrained; the SWAG
#: end-to-end ViT weights fix other sizes: vit_b_16 384, vit_l_16 512, vit_h_14 518).
#: inception_v3 is not fixed: it pools adaptively (299 is its weights' training size, 75 the minimum).
FIXED_SIZE = {"vit_b_16": 224, "vit_b_32": 224, "vit_l_16": 224, "vit_l_32": 224, "vit_h_14": 224}

BACKBONE_WIDTHS: dict[str, int] = dict(sorted(_W.items()))

#: parameters of each backbone as archspec builds it (classifier removed, no auxiliary heads),
#: counted on torch's meta device from torchvision 0.29; a test rebuilds a sample of them.
#: regnet_y_128gf is left out (too large to count here): its count is deferred to build.
BACKBONE_PARAMS: dict[str, int] = {
    "alexnet": 2469696, "convnext_base": 87566464, "convnext_large": 196230336, "convnext_small": 49454688,
    "convnext_tiny": 27820128, "densenet121": 6953856, "densenet161": 26472000, "densenet169": 12484480,
    "densenet201": 18092928, "efficientnet_b0": 4007548, "efficientnet_b1": 6513184,
    "efficientnet_b2": 7700994, "efficientnet_b3": 10696232, "efficientnet_b4": 17548616,
    "efficientnet_b5": 28340784, "efficientnet_b6": 40735704, "efficientnet_b7": 63786960,
    "efficientnet_v2_l": 117234272, "efficientnet_v2_m": 52858356, "efficientnet_v2_s": 20177488,
    "googlenet": 5599904, "inception_v3": 21785568, "maxvit_t": 30144968, "mnasnet0_5": 937512,
    "mnasnet0_75": 1889208, "mnasnet1_0": 3102312, "mnasnet1_3": 5001256, "mobilenet_v2": 2223872,
    "mobilenet_v3_large": 2971952, "mobilenet_v3_small": 927008, "regnet_x_16gf": 52229536,
    "regnet_x_1_6gf": 8277136, "regnet_x_32gf": 105290560, "regnet_x_3_2gf": 14287552,
    "regnet_x_400mf": 5094976, "regnet_x_800mf": 6586656, "regnet_x_8gf": 37651648,
    "regnet_y_16gf": 80565140, "regnet_y_1_6gf": 10313430, "regnet_y_32gf": 141333770,
    "regnet_y_3_2gf": 17923338, "regnet_y_400mf": 3903144, "regnet_y_800mf": 5647512,
    "regnet_y_8gf": 37364472, "resnet101": 42500160, "resnet152": 58143808, "resnet18": 11176512,
    "resnet34": 21284672, "resnet50": 23508032, "resnext101_32x8d": 86742336, "resnext101_64x4d": 81406272,
    "resnext50_32x4d": 22979904, "shufflenet_v2_x0_5": 341792, "shufflenet_v2_x1_0": 1253604,
    "shufflenet_v2_x1_5": 2478624, "shufflenet_v2_x2_0": 5344996, "squeezenet1_0": 735424,
    "squeezenet1_1": 722496, "swin_b": 86743224, "swin_s": 48837258, "swin_t": 27519354,
    "swin_v2_b": 86905848, "swin_v2_s": 48968442, "swin_v2_t": 27582570, "vgg11": 9220480,
    "vgg11_bn": 9225984, "vgg13": 9404992, "vgg13_bn": 9410880, "vgg16": 14714688, "vgg16_bn": 14723136,
    "vgg19": 20024384, "vgg19_bn": 20035392, "vit_b_16": 85798656, "vit_b_32": 87455232,
    "vit_h_14": 630764800, "vit_l_16": 303301632, "vit_l_32": 305510400, "wide_resnet101_2": 124837696,
    "wide_resnet50_2": 66834240,
}
