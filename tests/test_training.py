"""Tests of the data collators and an end-to-end run of the Hugging Face ``Trainer``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _model_helpers import synthetic_cells, tiny_config
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from transformers import Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from atacformer.modeling_atacformer import (
    AtacformerForCellClustering,
    AtacformerForReplacedTokenDetection,
    AtacformerForUnsupervisedBatchCorrection,
)
from atacformer.training import (
    DataCollatorForBatchCorrection,
    DataCollatorForReplacedTokenDetection,
    DataCollatorForTriplets,
)

# Vocabulary of 13 ids: regions 0..5, then unk 6, pad 7, mask 8, cls 9, eos 10, bos 11, sep 12.
N_REGIONS, PAD, CLS, SEP = 6, 7, 9, 12
SPECIALS = list(range(6, 13))


# Tiny tensors: a second torch thread only adds contention on a shared 2-core machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rtd_collator(p: float, seed: int = 0, **kwargs) -> DataCollatorForReplacedTokenDetection:
    return DataCollatorForReplacedTokenDetection(13, SPECIALS, PAD, p, seed=seed, **kwargs)


EXAMPLES = [
    {"input_ids": [CLS, 0, 1, 2, 3, SEP]},
    {"input_ids": np.array([CLS, 4, 5])},
    {"input_ids": torch.tensor([5])},
]


def test_rtd_collator_pads_and_labels_without_replacing_at_p0():
    batch = rtd_collator(0.0)(EXAMPLES)
    assert batch["input_ids"].tolist() == [
        [CLS, 0, 1, 2, 3, SEP],
        [CLS, 4, 5, PAD, PAD, PAD],
        [5, PAD, PAD, PAD, PAD, PAD],
    ]
    assert batch["attention_mask"].tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]]
    assert batch["labels"].tolist() == [
        [-100, 0, 0, 0, 0, -100],
        [-100, 0, 0, -100, -100, -100],
        [0, -100, -100, -100, -100, -100],
    ]
    assert all(t.dtype == torch.long for t in batch.values())


def test_rtd_collator_replaces_every_regular_token_at_p1():
    original = torch.tensor([[CLS, 0, 1, 2, 3, SEP], [CLS, 4, 5, PAD, PAD, PAD]])
    for seed in range(20):
        batch = rtd_collator(1.0, seed)(EXAMPLES[:2])
        ids, labels = batch["input_ids"], batch["labels"]
        regular = (labels != -100).bool()
        assert labels[regular].eq(1).all()
        assert (ids[regular] != original[regular]).all()  # a replacement is never the original
        assert (ids[regular] < N_REGIONS).all()  # and never a special token
        assert torch.equal(ids[~regular], original[~regular])  # specials and pads untouched


def test_rtd_collator_replaces_the_right_fraction_uniformly():
    cells = [{"input_ids": [0, 1, 2, 3, 4, 5] * 50} for _ in range(40)]  # 12,000 tokens
    batch = rtd_collator(0.3, seed=1)(cells)
    replaced = batch["labels"] == 1
    n = replaced.numel()
    assert abs(replaced.float().mean().item() - 0.3) < 5 * np.sqrt(0.3 * 0.7 / n)
    # Replacing id 0 must give each of 1..5 with probability 1/5: a chi-square test (df 4).
    orig = torch.tensor(cells[0]["input_ids"]).expand(40, -1)
    new = batch["input_ids"][replaced & (orig == 0)]
    counts = np.bincount(new.numpy(), minlength=6)
    assert counts[0] == 0
    expected = counts.sum() / 5
    chi2 = ((counts[1:] - expected) ** 2 / expected).sum()
    assert chi2 < 18.47  # the 0.999 quantile of chi-square with 4 degrees of freedom


def test_rtd_collator_reaches_every_non_special_id_around_gaps():
    # Specials scattered inside the vocabulary: 2, 5 and 6 must never be drawn.
    collator = DataCollatorForReplacedTokenDetection(9, [2, 5], 6, 1.0, seed=0)
    batch = collator([{"input_ids": [0] * 4000}])
    assert set(batch["input_ids"].unique().tolist()) == {1, 3, 4, 7, 8}


def test_rtd_collator_is_seeded():
    first, second = rtd_collator(0.5, seed=3), rtd_collator(0.5, seed=3)
    a = [first(EXAMPLES) for _ in range(2)]
    b = [second(EXAMPLES) for _ in range(2)]
    c = rtd_collator(0.5, seed=4)(EXAMPLES)
    assert all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0]["labels"], a[1]["labels"])  # the stream moves on per batch
    assert not torch.equal(a[0]["labels"], c["labels"])


def test_rtd_collator_from_config_uses_the_last_seven_ids():
    config = tiny_config(N_REGIONS)
    collator = DataCollatorForReplacedTokenDetection.from_config(config, mlm_probability=0.2)
    assert collator.special.tolist() == SPECIALS
    assert collator.pad_token_id == config.pad_token_id == PAD
    with pytest.raises(ValueError, match="last 7 ids"):
        DataCollatorForReplacedTokenDetection.from_config(tiny_config(N_REGIONS, pad_token_id=2))


def test_collators_truncate_and_pad_to_a_multiple():
    collator = rtd_collator(0.0, max_length=4, truncation_strategy="first", pad_to_multiple_of=8)
    batch = collator([{"input_ids": [0, 1, 2, 3, 4, 5]}, {"input_ids": [5]}])
    assert batch["input_ids"].tolist() == [[0, 1, 2, 3] + [PAD] * 4, [5] + [PAD] * 7]
    random_crop = rtd_collator(0.0, max_length=3, seed=2)([{"input_ids": [0, 1, 2, 3, 4, 5]}])
    kept = random_crop["input_ids"][0].tolist()
    assert len(kept) == 3 and kept == sorted(kept) and set(kept) <= set(range(6))


def test_triplet_collator_pads_each_role():
    collator = DataCollatorForTriplets(PAD)
    batch = collator(
        [
            {"anchor": [0, 1], "positive": [2], "negative": [3, 4, 5]},
            {"anchor": [5], "positive": [4, 3], "negative": [1]},
        ]
    )
    assert batch["input_ids_anchor"].tolist() == [[0, 1], [5, PAD]]
    assert batch["attention_mask_anchor"].tolist() == [[1, 1], [1, 0]]
    assert batch["input_ids_positive"].tolist() == [[2, PAD], [4, 3]]
    assert batch["attention_mask_positive"].tolist() == [[1, 0], [1, 1]]
    assert batch["input_ids_negative"].tolist() == [[3, 4, 5], [1, PAD, PAD]]
    assert batch["attention_mask_negative"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert sorted(batch) == sorted(
        f"{part}_{role}"
        for part in ("input_ids", "attention_mask")
        for role in ("anchor", "positive", "negative")
    )
    assert all(t.dtype == torch.long for t in batch.values())


def test_triplet_collator_output_goes_into_the_model_and_trains():
    torch.manual_seed(0)
    model = AtacformerForCellClustering(tiny_config(N_REGIONS))
    collator = DataCollatorForTriplets.from_config(model.config, max_length=3, seed=1)
    examples = [
        {"anchor": [0, 1, 2, 3], "positive": [0, 1], "negative": [4, 5, 3]},
        {"anchor": [4, 5], "positive": [5], "negative": [0, 1, 2, 3, 4]},
    ]
    batch = collator(examples)
    assert batch["input_ids_negative"].shape == (2, 3)  # truncated to max_length
    out = model(**batch)
    assert out.loss is not None and out.loss.requires_grad
    out.loss.backward()
    grad = model.atacformer.encoder.layers[0].linear1.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_a_geniml_style_training_step_runs_with_atacformer_imports_only(tmp_path):
    # A training step as written for geniml's atacformer: its collator (tokenizer,
    # max_position_embeddings), its example keys, model(**batch), loss = outputs[0], a step.
    # Only the imports differ from geniml's.
    from atacformer import AtacformerConfig, AtacformerForCellClustering, Tokenizer
    from atacformer.training import DataCollatorForTripletLoss

    bed = tmp_path / "universe.bed"
    bed.write_text("".join(f"chr1\t{i * 1000}\t{i * 1000 + 500}\n" for i in range(20)))
    tokenizer = Tokenizer(bed)
    config = AtacformerConfig.from_tokenizer(
        tokenizer,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=16,
    )
    torch.manual_seed(0)
    model = AtacformerForCellClustering(config)
    collator = DataCollatorForTripletLoss(tokenizer, max_position_embeddings=8)
    rng = np.random.default_rng(0)
    features = [
        {
            "input_ids_anchor": rng.integers(0, 10, 12).tolist(),
            "input_ids_positive": rng.integers(0, 10, 5).tolist(),
            "input_ids_negative": rng.integers(10, 20, 7).tolist(),
        }
        for _ in range(4)
    ]
    batch = collator(features)
    assert batch["input_ids_anchor"].shape == (4, 8)  # cut to max_position_embeddings
    assert (batch["input_ids_anchor"] != tokenizer.pad_token_id).all()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    before = model.atacformer.encoder.layers[1].linear2.weight.detach().clone()
    losses = []
    for _ in range(3):
        outputs = model(**batch)
        loss = outputs[0]  # what the Trainer takes, dict or tuple
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert not torch.equal(before, model.atacformer.encoder.layers[1].linear2.weight)
    loss, anchor, positive, negative = model(**batch, return_dict=False)  # geniml's tuple
    assert anchor.shape == positive.shape == negative.shape == (4, 32)


def test_batch_correction_collator_adds_batch_labels():
    collator = DataCollatorForBatchCorrection(13, SPECIALS, PAD, 0.0)
    batch = collator(
        [{"input_ids": [0, 1], "batch_label": 2}, {"input_ids": [3], "batch_label": 0}]
    )
    assert batch["batch_labels"].tolist() == [2, 0]
    assert batch["labels"].tolist() == [[0, 0], [0, -100]]
    geniml = collator([{"input_ids": [0], "batch_id": 1}, {"input_ids": [3], "batch_id": 0}])
    assert geniml["batch_labels"].tolist() == [1, 0]  # geniml's key


def test_dataloader_workers_corrupt_differently():
    collator = rtd_collator(0.5, seed=0)
    loader = torch.utils.data.DataLoader(
        [{"input_ids": [0, 1, 2, 3, 4, 5] * 20}] * 4,
        batch_size=1,
        num_workers=2,
        collate_fn=collator,
        multiprocessing_context="fork",
    )
    batches = [b["input_ids"] for b in loader]  # workers alternate: 0, 1, 0, 1
    assert not torch.equal(batches[0], batches[1])


# ------------------------------------------------------------------------------ with the Trainer


def trainer_args(tmp_path, **kwargs) -> TrainingArguments:
    defaults = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=32,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        logging_steps=50,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        remove_unused_columns=False,
        disable_tqdm=True,
        seed=0,
    )
    defaults.update(kwargs)
    return TrainingArguments(**defaults)


def quiet_trainer(**kwargs) -> Trainer:
    trainer = Trainer(**kwargs)
    trainer.remove_callback(PrinterCallback)
    return trainer


def test_trainer_learns_replaced_token_detection_and_separates_cell_types(tmp_path):
    # Three types, each opening its own 30 peaks at p=0.5, plus 20 shared background regions
    # at p=0.3. No position embeddings (like the published model); init std 0.1 rather than 0.02
    # so that the tiny model leaves the "predict the prior" plateau within a few hundred steps.
    cells, types, n_regions = synthetic_cells(
        peaks_per_type=30, n_background=20, p_background=0.3, cells_per_type=100, seed=0
    )
    torch.manual_seed(0)
    config = tiny_config(n_regions, use_pos_embeddings=False, initializer_range=0.1)
    model = AtacformerForReplacedTokenDetection(config)
    examples = [{"input_ids": c} for c in cells]
    held_out = DataCollatorForReplacedTokenDetection.from_config(config, seed=123)(examples)

    def rtd_loss() -> float:
        model.eval()
        with torch.no_grad():
            return model(**held_out).loss.item()

    before = rtd_loss()
    trainer = quiet_trainer(
        model=model,
        args=trainer_args(tmp_path, max_steps=500),
        train_dataset=examples,
        data_collator=DataCollatorForReplacedTokenDetection.from_config(config, seed=0),
    )
    trainer.train()
    after = rtd_loss()
    # An untrained head sits near ln 2 = 0.69. The best predictor that ignores the other tokens
    # of a cell scores 0.42 here (the entropy of "replaced" given only the token id: 0.45 for a
    # type peak, 0.33 for a background region, weighted by frequency). Below 0.35 the model must
    # read the cell's context: a replacement from another type's peaks is detectable.
    assert before > 0.6
    assert after < 0.35
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert logged[-1] < logged[0]

    embeddings = model.encode_tokenized_cells(cells, progress=False)
    labels = KMeans(3, n_init=10, random_state=0).fit_predict(embeddings)
    # ARI 0.8 means nearly every cell lands with its type. Chance (or cells returned in the
    # wrong order, or embeddings collapsed onto the "is this token real" direction, which is
    # what RTD training does on data without a type signal) scores about 0; seeds 0-2 reach 1.0.
    assert adjusted_rand_score(types, labels) > 0.8


def test_trainer_runs_cell_clustering_with_triplets(tmp_path):
    cells, types, n_regions = synthetic_cells(cells_per_type=20, seed=1)
    rng = np.random.default_rng(0)
    triplets = []
    for i, t in enumerate(types):
        same = np.flatnonzero((types == t) & (np.arange(len(types)) != i))
        other = np.flatnonzero(types != t)
        triplets.append(
            {
                "anchor": cells[i],
                "positive": cells[rng.choice(same)],
                "negative": cells[rng.choice(other)],
            }
        )
    torch.manual_seed(0)
    config = tiny_config(n_regions, use_pos_embeddings=False)
    model = AtacformerForCellClustering(config)
    trainer = quiet_trainer(
        model=model,
        args=trainer_args(tmp_path, max_steps=30, logging_steps=5, learning_rate=3e-4),
        train_dataset=triplets,
        data_collator=DataCollatorForTriplets.from_config(config),
    )
    trainer.train()
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert all(np.isfinite(logged)) and logged[-1] < logged[0]


def test_trainer_updates_only_unfrozen_batch_correction_weights(tmp_path):
    cells, _, n_regions = synthetic_cells(cells_per_type=20, seed=2)
    examples = [{"input_ids": c, "batch_label": i % 2} for i, c in enumerate(cells)]
    torch.manual_seed(0)
    config = tiny_config(n_regions, num_batches=2, bc_unfreeze_last_n_layers=1)
    model = AtacformerForUnsupervisedBatchCorrection(config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = quiet_trainer(
        model=model,
        args=trainer_args(tmp_path, max_steps=5, per_device_train_batch_size=8),
        train_dataset=examples,
        data_collator=DataCollatorForBatchCorrection.from_config(config),
    )
    trainer.train()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert "atacformer.encoder.layers.1.linear1.weight" in changed  # last layer trains
    assert "atacformer.encoder.layers.0.norm1.weight" in changed  # every LayerNorm trains
    assert "batch_prediction_head.weight" in changed
    assert "atacformer.encoder.layers.0.linear1.weight" not in changed  # earlier layers frozen
    assert "atacformer.embeddings.token_embeddings.weight" not in changed
