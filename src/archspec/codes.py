"""Every diagnostic code archspec reports: a title and what it means for a reviewer.

The one catalogue behind SARIF rules (``validate --format sarif``), the table in
``docs/review.md``, and a test that every code the source can report is described here.
"""

from __future__ import annotations

#: code → (title, help: what it means and what to do)
CODES: dict[str, tuple[str, str]] = {
    # --- loading (YAML)
    "E-FILE": ("File cannot be read",
               "A spec file (or a local directory it names, e.g. a pretrained model) is missing or unreadable. "
               "Fix the path; relative paths inside a spec start from the spec's directory."),
    "E-YAML-SYNTAX": ("YAML syntax error",
                      "The file is not valid YAML (indentation, an unclosed bracket or quote, a tab, a control "
                      "character). Nothing else can be checked until it parses."),
    "E-YAML-DOC": ("Not a single spec document",
                   "A spec is one YAML document whose top level is a mapping of sections; the file is empty, "
                   "holds several documents or is not a mapping."),
    "E-YAML-SIZE": ("Spec too large", "A spec is capped at 1 MiB; data belongs in data files, not in the spec."),
    "E-YAML-DEPTH": ("Nesting too deep", "The YAML nests deeper than 64 levels, which no spec needs."),
    "E-YAML-ALIAS": ("Alias expansion too large",
                     "Anchors and aliases expand to more than 100,000 nodes (an alias bomb); write the values out."),
    "E-YAML-TAG": ("YAML tag not allowed",
                   "Explicit tags (`!!python/...`, `!custom`) are refused: a spec is plain data and never "
                   "constructs objects."),
    "E-YAML-MERGE": ("Merge key not supported",
                     "`<<` merge keys are not YAML 1.2 and are refused; write the keys out."),
    "E-YAML-KEY": ("Key is not a scalar", "A mapping key must be a plain string."),
    "E-YAML-DUPKEY": ("Duplicate key",
                      "The same key appears twice in one mapping. Many YAML loaders silently keep the last one, "
                      "so the reviewer and the trainer would read different specs."),
    # --- schema
    "E-VERSION": ("Unsupported spec version", "`archspec:` must be the format version `1`."),
    "E-SCHEMA-UNKNOWN": ("Unknown key",
                         "A key the spec language does not have (usually a typo; a did-you-mean is given). "
                         "archspec never ignores a key silently."),
    "E-SCHEMA-MISSING": ("Missing required key", "A required field is absent (e.g. a head's `from`)."),
    "E-SCHEMA-TYPE": ("Wrong type", "A value has the wrong type (a string where a number is expected, ...)."),
    "E-SCHEMA-VALUE": ("Invalid value",
                       "A value is out of its range or not allowed here (a negative width, a dropout of 1.5, "
                       "a branch listed twice, ...)."),
    "E-UNKNOWN-TYPE": ("Unknown component type",
                       "A node's `type` names no registered input, encoder, fusion or head (a did-you-mean and "
                       "the known types are given)."),
    # --- graph
    "E-NAME": ("Invalid node name",
               "Node names become module names in the state dict: letters, digits and underscores, not "
               "starting with a digit."),
    "E-NAME-DUP": ("Duplicate node name", "Node names are unique across all sections of a spec."),
    "E-REF": ("Unknown node", "A node reads a node that does not exist (usually a typo; a did-you-mean is given)."),
    "E-REF-KIND": ("Wrong kind of node read",
                   "An edge connects nodes that cannot be connected: e.g. a head reading a head, or a late "
                   "fusion (which combines predictions) reading features."),
    "E-REF-OUTPUT": ("Unknown task output",
                     "A `NODE.TASK` reference names a task output the node does not have, or a node with one "
                     "output per task (`mmoe`) is read without naming the task."),
    "E-CYCLE": ("Cycle", "The graph has a cycle; a spec is a directed acyclic graph."),
    "E-NO-HEADS": ("No heads", "Nothing is predicted or trained: add a head."),
    # --- shapes and semantics
    "E-MODALITY": ("Wrong kind of data",
                   "A component reads data of the wrong kind (an image encoder reading token ids, an "
                   "embedding reading floats, ...)."),
    "E-FLOAT-IDS": ("Token ids read as floats",
                    "Token ids arrive through a float input; a transformer or embedding needs a `text` input "
                    "that gives int64 ids and an attention mask."),
    "E-SEQUENCE": ("Sequence where a vector is expected (or the reverse)",
                   "A sequence (B, T, D) reaches a node that reads one vector per example, or a pooled vector "
                   "reaches a cross-attention fusion that attends over a sequence: set the encoder's pooling."),
    "E-SHAPE": ("Shape mismatch",
                "Inferred shapes do not fit: towers of different widths, an image too small for the stages, "
                "a weight list of the wrong length, a hidden size not divisible by the heads, ..."),
    "E-POOLING": ("No pooler output", "`pooling: pooler` on a transformer model type that has no pooler."),
    "E-SAMPLE-RATE": ("Sample rate differs from the model's",
                      "An `audio` input is resampled to a rate other than the one the pretrained audio model's "
                      "feature extractor was trained at (its preprocessor_config.json): set the input's "
                      "`sample_rate` to the model's."),
    "E-VOCAB": ("Vocabulary larger than the embedding",
                "A tokenizer may emit ids the model cannot embed: the training would index out of range."),
    "E-LATE-LABELS": ("Late fusion members disagree",
                      "A late fusion combines predictions over one label space and target; its members predict "
                      "different classes or columns, or have no class probabilities."),
    "E-RUN-MEMBER": ("Member run unusable",
                     "A `type: run` head names a run directory that is not a trained run, a head that run does "
                     "not have, or a run whose spec no longer checks. Train the member run first, or fix `run` / "
                     "`head`."),
    "E-LATE-WEIGHTS": ("Late fusion weights invalid",
                       "One weight per member, summing to 1, and only for combinations that take fixed weights."),
    "E-LATE-LOSS": ("Late fusion loss invalid",
                    "The fused loss cannot train anything (a hard vote, fixed weights with independent members) "
                    "or is missing where learned weights need it."),
    "E-LOSS-KIND": ("Loss does not fit the prediction",
                    "The loss type does not apply to this head kind or to what the node outputs (logits vs "
                    "probabilities)."),
    "E-SOFTMAX-CE": ("Softmax applied twice",
                     "cross_entropy applies a softmax to what is already a probability: use `nll`, or average "
                     "logits."),
    "E-METRIC": ("Metric unknown or not applicable",
                 "The metric does not exist or does not apply to this prediction (e.g. mae on a classifier), or "
                 "early stopping names a metric the head does not report."),
    "E-LOSS-WEIGHTING": ("Loss weighting cannot work",
                         "A learned `training.loss_weighting` (uncertainty, gradnorm, dwa) needs at least two "
                         "losses, and gradnorm needs a trainable node they share."),
    "W-SQUASH": ("Squashing activation before the output",
                 "A softmax/sigmoid feeds a head that applies its own softmax/sigmoid in the loss: the model "
                 "trains on probabilities of probabilities. Usually a mistake copied from Keras code."),
    "W-UNUSED": ("Unused node", "No prediction depends on this node: dead weight, or a wiring mistake."),
    "W-TOKENIZER": ("Tokenizer does not match the pretrained model",
                    "A pretrained transformer reads ids from a newly trained vocabulary: its embeddings expect "
                    "the ids of its own tokenizer."),
    "W-SIM-BCE": ("Raw similarity as a logit",
                  "A cosine or euclidean score fed straight into binary cross-entropy caps the predicted "
                  "probability (0.73 for cosine): add a temperature or a learned scale."),
    "W-SIM-TEMPERATURE": ("Temperature applied twice",
                          "A contrastive similarity head sets both its own `temperature` and the loss's: the "
                          "score is divided twice. Keep one."),
    "W-BACKBONE": ("Backbone not in archspec's table",
                   "The torchvision model is unknown to archspec: its width (and parameter count) is only known "
                   "at build. Check the name."),
    "W-MMOE-LEVELS": ("MMoE levels without task experts",
                      "Several `levels` without `task_experts` stack identical mixtures of the same experts: "
                      "more parameters, no new structure. Set `task_experts` (PLE) or `levels: 1`."),
    "N-WEIGHTS": ("Named weights are downloaded on first build",
                  "Named torchvision weights are downloaded by torchvision into the torch hub cache on first "
                  "build (offline, they must be there already: `archspec fetch` puts them there)."),
    "N-DEFERRED": ("Width deferred to build",
                   "A pretrained hub model is not in the local cache (or `validate --online` could not look it "
                   "up: the note says why), so its width (and what depends on it) is checked only when the "
                   "model is built. `archspec validate --online` reads its config.json from the hub now."),
    # --- inline transformer configs
    "E-HF-CONFIG": ("Invalid inline transformer config value",
                    "A size, count or probability inside an inline transformer `config:` is invalid (e.g. a "
                    "negative layer count); without this check it would fail at build with a torch error."),
    "W-HF-KEY": ("Unknown inline transformer config key",
                 "The key is not a field of this model type's transformers config; transformers would store it "
                 "and ignore it, so the setting silently has no effect."),
    # --- sweep files (archspec sweep)
    "E-SWEEP": ("Sweep file does not fit its spec",
                "The sweep file names a metric the spec does not report, a node the spec does not have, a path "
                "that cannot be written, a continuous distribution under the grid sampler, or a `first_trials` "
                "value outside its distribution. The sweep would fail or search the wrong thing."),
    "E-SWEEP-TRIAL": ("Sweep trial made the spec invalid",
                      "The values drawn for a trial made the spec invalid; that trial failed. Narrow the "
                      "parameter's range or choices."),
    "W-SWEEP-SPACE": ("Sweep range reaches invalid specs",
                      "An edge of a parameter's range makes the spec invalid on its own: trials that draw it "
                      "will fail. Narrow the range."),
    # --- validate --data
    "E-DATA-FILE": ("Data file unreadable", "A data file given to `validate --data` is missing or does not parse."),
    "E-DATA-COLUMN": ("Column missing from the data",
                      "A column the spec reads (an input or a label column) is not in the data file's header."),
    "E-DATA-TYPE": ("Column is not numeric",
                    "A numeric input or regression target holds text in the first rows of the data file."),
    "E-DATA-IMAGE": ("Image file missing",
                     "An image column names a file that does not exist (paths are relative to the data file)."),
    "N-DATA-MISSING": ("Data file not found",
                       "A `training.data` file does not exist on this machine, so `--data` could not check it."),
}

SEVERITY_OF_PREFIX = {"E": "error", "W": "warning", "N": "note"}


def describe(code: str) -> tuple[str, str]:
    """``(title, help)`` of a code; a generic entry for a code this catalogue does not know (a plugin's)."""
    if code in CODES:
        return CODES[code]
    return (f"archspec diagnostic {code}", "Reported by a component or plugin; see its documentation.")
