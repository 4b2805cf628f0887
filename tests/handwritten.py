"""Hand-written PyTorch twins of the seed architectures (the specs in ``tests/parity_specs/``).

Each twin is what an engineer would write by hand for the seed's Keras model: plain modules,
positional tensor arguments, explicit layers, and a loss function. ``tests/test_parity.py`` proves
that the archspec-compiled model computes exactly the same thing; ``bench/compiled_vs_handwritten.py``
times the two against each other. This is the only copy of the twins.

Every twin has:

- ``ARGS``: the compiled model's batch keys, in the order of the twin's ``forward`` arguments;
- ``OUTPUTS``: the compiled model's prediction names, in the order of the twin's outputs;
- ``state_map()``: ``[(compiled prefix, twin prefix or None)]`` — how every entry of the compiled
  model's ``state_dict`` maps onto the twin's (``None``: a constant buffer the twin hard-codes,
  listed with its expected value in ``CONSTANTS``);
- ``loss(outputs, targets)``: the training loss, as the twin's author would write it;
- ``from_spec(spec)``: the twin sized from a raw spec mapping (used by the benchmark, which
  shrinks the specs; the parity tests build the twins from literal seed sizes instead).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from transformers import BertConfig, BertModel

_EPS = 1e-7


def bert_config(cfg: dict) -> BertConfig:
    """A ``BertConfig`` from a spec's inline ``config`` mapping."""
    return BertConfig(**{k: v for k, v in cfg.items() if k != "model_type"})


def _backbone(name: str) -> tuple[nn.Module, int]:
    """A torchvision classifier with its last layer removed, and its feature width."""
    m = torchvision.models.get_model(name, weights=None)
    width = m.fc.in_features
    m.fc = nn.Identity()
    return m, width


# ---------------------------------------------------------------------------------------------
class MultiTaskClassifier(nn.Module):
    """Seed §1: one BERT (``pooler_output``) shared by three task heads."""

    ARGS = ("text_input", "text_input.mask")
    OUTPUTS = ("task1_output", "task2_output", "task3_output")
    CONSTANTS: dict = {}

    def __init__(self, config: BertConfig, n_task1: int = 3, n_task2: int = 5, n_task3: int = 10):
        super().__init__()
        self.bert = BertModel(config, add_pooling_layer=True)
        self.task1 = nn.Linear(config.hidden_size, n_task1)
        self.task2 = nn.Linear(config.hidden_size, n_task2)
        self.task3 = nn.Linear(config.hidden_size, n_task3)

    def forward(self, ids, mask):  # (B, T), (B, T) -> (B, 3), (B, 5), (B, 10) logits
        shared = self.bert(input_ids=ids, attention_mask=mask).pooler_output  # (B, 768)
        return self.task1(shared), self.task2(shared), self.task3(shared)

    @staticmethod
    def loss(outputs, targets):
        t1, t2, t3 = outputs
        return (1.0 * F.cross_entropy(t1, targets["task1_output"])
                + 0.5 * F.cross_entropy(t2, targets["task2_output"])
                + 0.8 * F.binary_cross_entropy_with_logits(t3, targets["task3_output"]))

    @staticmethod
    def state_map():
        return [("encoders.bert_model.model.", "bert."),
                ("heads.task1_output.out.", "task1."),
                ("heads.task2_output.out.", "task2."),
                ("heads.task3_output.out.", "task3.")]

    @classmethod
    def from_spec(cls, spec: dict) -> "MultiTaskClassifier":
        h = spec["heads"]
        return cls(bert_config(spec["encoders"]["bert_model"]["config"]), h["task1_output"]["classes"],
                   h["task2_output"]["classes"], h["task3_output"]["labels"])


# ---------------------------------------------------------------------------------------------
class TwoTower(nn.Module):
    """Seed §2: user and item towers Dense(128)-Dense(64)-Dense(32), all ReLU, cosine similarity."""

    ARGS = ("user_input", "item_input")
    OUTPUTS = ("similarity",)
    CONSTANTS: dict = {}

    def __init__(self, num_user_features: int, num_item_features: int):
        super().__init__()
        self.user1, self.user2, self.user3 = nn.Linear(num_user_features, 128), nn.Linear(128, 64), nn.Linear(64, 32)
        self.item1, self.item2, self.item3 = nn.Linear(num_item_features, 128), nn.Linear(128, 64), nn.Linear(64, 32)

    def forward(self, user, item):  # (B, U), (B, I) -> (B,) cosine
        u = F.relu(self.user3(F.relu(self.user2(F.relu(self.user1(user))))))  # (B, 32)
        i = F.relu(self.item3(F.relu(self.item2(F.relu(self.item1(item))))))  # (B, 32)
        return (F.normalize(u, dim=-1) * F.normalize(i, dim=-1)).sum(-1),

    @staticmethod
    def loss(outputs, targets):
        # archspec's reading of `loss="binary_crossentropy"` on a score: the score is the logit
        return F.binary_cross_entropy_with_logits(outputs[0], targets["similarity"])

    @staticmethod
    def state_map():
        return [("encoders.user_embedding.0.", "user1."), ("encoders.user_embedding.2.", "user2."),
                ("encoders.user_embedding.4.", "user3."), ("encoders.item_embedding.0.", "item1."),
                ("encoders.item_embedding.2.", "item2."), ("encoders.item_embedding.4.", "item3.")]

    @classmethod
    def from_spec(cls, spec: dict) -> "TwoTower":
        return cls(spec["inputs"]["user_input"]["width"], spec["inputs"]["item_input"]["width"])


class TwoTowerSequential(TwoTower):
    """The same two towers written in the other common style: ``nn.Sequential`` of layer modules
    (what Keras' ``Sequential`` reads as). Same math, more module calls per step."""

    def __init__(self, num_user_features: int, num_item_features: int):
        nn.Module.__init__(self)
        self.user_tower = nn.Sequential(nn.Linear(num_user_features, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                                        nn.Linear(64, 32), nn.ReLU())
        self.item_tower = nn.Sequential(nn.Linear(num_item_features, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                                        nn.Linear(64, 32), nn.ReLU())

    def forward(self, user, item):  # (B, U), (B, I) -> (B,) cosine
        u, i = self.user_tower(user), self.item_tower(item)
        return (F.normalize(u, dim=-1) * F.normalize(i, dim=-1)).sum(-1),

    @staticmethod
    def state_map():
        return [("encoders.user_embedding.", "user_tower."), ("encoders.item_embedding.", "item_tower.")]


# ---------------------------------------------------------------------------------------------
class EarlyFusion(nn.Module):
    """Seed §3: BERT ``pooler_output`` and ResNet features concatenated, one dense layer."""

    ARGS = ("text_input", "text_input.mask", "image_input")
    OUTPUTS = ("prediction",)
    CONSTANTS: dict = {}

    def __init__(self, config: BertConfig, image_model: str = "resnet18", n_classes: int = 3):
        super().__init__()
        self.bert = BertModel(config, add_pooling_layer=True)
        self.resnet, image_width = _backbone(image_model)
        self.dense = nn.Linear(config.hidden_size + image_width, n_classes)

    def forward(self, ids, mask, image):  # (B, T), (B, T), (B, 3, H, W) -> (B, C) logits
        text_features = self.bert(input_ids=ids, attention_mask=mask).pooler_output
        image_features = self.resnet(image)
        return self.dense(torch.cat([text_features, image_features], dim=-1)),

    @staticmethod
    def loss(outputs, targets):
        return F.cross_entropy(outputs[0], targets["prediction"])

    @staticmethod
    def state_map():
        return [("encoders.bert_model.model.", "bert."), ("encoders.resnet_model.body.", "resnet."),
                ("heads.prediction.out.", "dense.")]

    @classmethod
    def from_spec(cls, spec: dict) -> "EarlyFusion":
        enc = spec["encoders"]
        return cls(bert_config(enc["bert_model"]["config"]), enc["resnet_model"]["model"],
                   len(spec["heads"]["prediction"]["classes"]))


# ---------------------------------------------------------------------------------------------
class LateFusion(nn.Module):
    """Seed §4: a text model and a tabular model, each with its own softmax output, trained
    separately; final = 0.6 * text probabilities + 0.4 * tabular probabilities."""

    ARGS = ("text_input", "text_input.mask", "tabular_input")
    OUTPUTS = ("text_pred", "tabular_pred", "final_pred")
    CONSTANTS = {"fusions.final_pred.weights": [0.6, 0.4]}

    def __init__(self, config: BertConfig, n_tabular: int = 5, n_classes: int = 3):
        super().__init__()
        self.text_bert = BertModel(config, add_pooling_layer=False)
        self.text_out = nn.Linear(config.hidden_size, n_classes)
        self.tab1, self.tab2 = nn.Linear(n_tabular, 64), nn.Linear(64, 32)
        self.tab_out = nn.Linear(32, n_classes)

    def forward(self, ids, mask, tabular):
        text_logits = self.text_out(self.text_bert(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0])
        tab_logits = self.tab_out(F.relu(self.tab2(F.relu(self.tab1(tabular)))))
        # separate models: the combination never trains them
        final = 0.6 * torch.softmax(text_logits.detach(), -1) + 0.4 * torch.softmax(tab_logits.detach(), -1)
        return text_logits, tab_logits, final

    @staticmethod
    def loss(outputs, targets):
        text_logits, tab_logits, _ = outputs
        return F.cross_entropy(text_logits, targets["text_pred"]) + F.cross_entropy(tab_logits, targets["tabular_pred"])

    @staticmethod
    def state_map():
        return [("encoders.text_model.model.", "text_bert."), ("heads.text_pred.out.", "text_out."),
                ("encoders.tabular_model.0.", "tab1."), ("encoders.tabular_model.2.", "tab2."),
                ("heads.tabular_pred.out.", "tab_out."), ("fusions.final_pred.weights", None)]

    @classmethod
    def from_spec(cls, spec: dict) -> "LateFusion":
        return cls(bert_config(spec["encoders"]["text_model"]["config"]),
                   len(spec["inputs"]["tabular_input"]["columns"]), spec["heads"]["text_pred"]["classes"])


# ---------------------------------------------------------------------------------------------
class HybridFusion(nn.Module):
    """Seed §5: frame CNN + audio Dense(64) fused early into one prediction; a caption model's
    prediction; the two probabilities combined with learned (softmax-normalised) weights."""

    ARGS = ("frame_input", "audio_input", "caption_input", "caption_input.mask")
    OUTPUTS = ("audiovisual_pred", "caption_pred", "video_pred")
    CONSTANTS = {"fusions.video_pred.weights": [0.5, 0.5]}

    def __init__(self, channels=(16, 32), audio_width: int = 128, vocab: int = 4000, n_classes: int = 4):
        super().__init__()
        c1, c2 = channels
        self.conv1, self.bn1 = nn.Conv2d(3, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1)
        self.conv2, self.bn2 = nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2)
        self.audio = nn.Linear(audio_width, 64)
        self.fuse = nn.Linear(c2 + 64, 64)
        self.av_out = nn.Linear(64, n_classes)
        self.caption_embedding = nn.Embedding(vocab, 64, padding_idx=0)
        self.caption_out = nn.Linear(64, n_classes)
        self.late_logits = nn.Parameter(torch.zeros(2))

    def forward(self, frame, audio, caption_ids, caption_mask):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(frame))), 2)
        x = F.relu(self.bn2(self.conv2(x)))
        frame_features = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (B, c2)
        audio_features = F.relu(self.audio(audio))  # (B, 64)
        av_logits = self.av_out(F.relu(self.fuse(torch.cat([frame_features, audio_features], -1))))
        m = caption_mask.unsqueeze(-1).float()  # (B, T, 1): mean over the real tokens
        captions = (self.caption_embedding(caption_ids) * m).sum(1) / m.sum(1).clamp_min(1.0)
        caption_logits = self.caption_out(captions)
        w = torch.softmax(self.late_logits, 0)
        video = w[0] * torch.softmax(av_logits, -1) + w[1] * torch.softmax(caption_logits, -1)
        return av_logits, caption_logits, video

    @staticmethod
    def loss(outputs, targets):
        av_logits, caption_logits, video = outputs
        return (0.5 * F.cross_entropy(av_logits, targets["audiovisual_pred"])
                + 0.5 * F.cross_entropy(caption_logits, targets["caption_pred"])
                + F.nll_loss(torch.log(video.clamp_min(_EPS)), targets["video_pred"]))

    @staticmethod
    def state_map():
        return [("encoders.frame_model.features.0.", "conv1."), ("encoders.frame_model.features.1.", "bn1."),
                ("encoders.frame_model.features.4.", "conv2."), ("encoders.frame_model.features.5.", "bn2."),
                ("encoders.audio_model.0.", "audio."), ("fusions.audiovisual_features.dense.0.", "fuse."),
                ("heads.audiovisual_pred.out.", "av_out."),
                ("encoders.caption_model.embedding.", "caption_embedding."),
                ("heads.caption_pred.out.", "caption_out."),
                ("fusions.video_pred.weight_logits", "late_logits"), ("fusions.video_pred.weights", None)]

    @classmethod
    def from_spec(cls, spec: dict) -> "HybridFusion":
        return cls(tuple(spec["encoders"]["frame_model"]["channels"]), spec["inputs"]["audio_input"]["width"],
                   spec["inputs"]["caption_input"]["tokenizer"]["vocab_size"],
                   spec["heads"]["audiovisual_pred"]["classes"])


# ---------------------------------------------------------------------------------------------
class MultiLabelEarlyFusion(nn.Module):
    """Seed §6: ResNet-50 (avg-pooled) + BERT ``pooler_output`` + Dense(64) tabular features,
    concatenated, Dense(128) ReLU, Dropout(0.5), Dense(num_labels) sigmoid."""

    ARGS = ("image_input", "text_input", "text_input.mask", "tabular_input")
    OUTPUTS = ("multi_label_output",)
    CONSTANTS: dict = {}

    def __init__(self, config: BertConfig, image_model: str = "resnet50", n_tabular: int = 10, n_labels: int = 6):
        super().__init__()
        self.image_encoder, image_width = _backbone(image_model)
        self.bert = BertModel(config, add_pooling_layer=True)
        self.tabular = nn.Linear(n_tabular, 64)
        self.dense = nn.Linear(image_width + config.hidden_size + 64, 128)
        self.dropout = nn.Dropout(0.5)
        self.out = nn.Linear(128, n_labels)

    def forward(self, image, ids, mask, tabular):  # -> (B, L) logits
        image_features = self.image_encoder(image)  # (B, 2048)
        text_features = self.bert(input_ids=ids, attention_mask=mask).pooler_output  # (B, 768)
        tabular_features = F.relu(self.tabular(tabular))  # (B, 64)
        x = torch.cat([image_features, text_features, tabular_features], dim=-1)
        x = self.dropout(F.relu(self.dense(x)))
        return self.out(x),

    @staticmethod
    def loss(outputs, targets):
        return F.binary_cross_entropy_with_logits(outputs[0], targets["multi_label_output"])

    @staticmethod
    def state_map():
        return [("encoders.image_encoder.body.", "image_encoder."), ("encoders.bert_model.model.", "bert."),
                ("encoders.tabular_features.0.", "tabular."), ("fusions.combined_features.dense.0.", "dense."),
                ("heads.multi_label_output.out.", "out.")]

    @classmethod
    def from_spec(cls, spec: dict) -> "MultiLabelEarlyFusion":
        enc = spec["encoders"]
        return cls(bert_config(enc["bert_model"]["config"]), enc["image_encoder"]["model"],
                   len(spec["inputs"]["tabular_input"]["columns"]), len(spec["heads"]["multi_label_output"]["labels"]))


TWINS = {
    "multitask_classifier": MultiTaskClassifier,
    "two_tower": TwoTower,
    "early_fusion": EarlyFusion,
    "late_fusion": LateFusion,
    "hybrid_fusion": HybridFusion,
    "multilabel_early_fusion": MultiLabelEarlyFusion,
}


def map_state_dict(compiled_sd: dict, mapping: list) -> tuple[dict, dict]:
    """Rename the compiled model's state-dict entries to the twin's, by the explicit prefix map.

    Every compiled key must match exactly one prefix (no entry is silently dropped).

    Returns:
        ``(twin state dict, {compiled key: tensor} of constants the twin hard-codes)``.
    """
    out, constants = {}, {}
    for key, value in compiled_sd.items():
        hits = [(src, dst) for src, dst in mapping if key == src or (src.endswith(".") and key.startswith(src))]
        if len(hits) != 1:
            raise KeyError(f"compiled entry {key!r} matches {len(hits)} prefixes of the map")
        src, dst = hits[0]
        if dst is None:
            constants[key] = value
        else:
            out[dst + key[len(src):]] = value.clone() if value is not None else None
    return out, constants


def copy_weights(compiled: nn.Module, twin: nn.Module) -> dict:
    """Load the compiled model's weights into the twin (strict: every twin entry must be filled).

    Returns:
        the constants the twin hard-codes (compiled key → tensor).
    """
    sd, constants = map_state_dict(compiled.state_dict(), twin.state_map())
    twin.load_state_dict(sd, strict=True)
    return constants


def twin_outputs(compiled_out: dict, twin) -> tuple:
    """The compiled model's outputs in the twin's order."""
    return tuple(compiled_out[n] for n in twin.OUTPUTS)


def twin_args(batch: dict, twin) -> list:
    return [batch[k] for k in twin.ARGS]
