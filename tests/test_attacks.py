"""The attack suite on a tiny real box: every attack runs and returns a sane result, key search
moves its candidate downhill, top-k masking is exact, no attack ever sees the key, and
attacks.json has the schema the benchmark report reads."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from sdbox import SafeBox
from sdbox.attacks import ATTACKS, AttackData, AttackResult, Budget, attacks_markdown, run_attacks
from sdbox.attacks import runner
from sdbox.attacks.key_search import search_key
from sdbox.attacks.topk import topk_mask
from sdbox.benchmark.models import create
from sdbox.data import CIFAR10_MEAN, CIFAR10_STD, decode_image_folder
from sdbox.errors import SdboxError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"
pytestmark = pytest.mark.skipif(not (DATA / "train").is_dir(), reason=f"needs the CIFAR-10 ImageFolder tree at {DATA}")
BUDGET = Budget(epochs=1, batch_size=64, key_search_steps=8, n_keys=2)


def student() -> torch.nn.Module:
    return create("cnn5")


def score_of(model: torch.nn.Module, data: AttackData) -> float:
    with torch.no_grad():
        return 100.0 * (model.eval()(data.test_x).argmax(1) == data.test_y).float().mean().item()


@pytest.fixture(scope="module")
def data() -> AttackData:
    return AttackData.from_uint8(decode_image_folder(DATA / "train", 200), decode_image_folder(DATA / "test", 100), CIFAR10_MEAN, CIFAR10_STD)


@pytest.fixture(scope="module")
def box(data: AttackData) -> SafeBox:
    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(data.train_x, data.train_y), batch_size=50, shuffle=True)
    return SafeBox.wrap(create("cnn5"), loader, epochs=1, max_accuracy_drop=100.0, mean=CIFAR10_MEAN, std=CIFAR10_STD, device="cpu", progress=False)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_attack_returns_a_sane_result(name, box, data):
    settings = ATTACKS[name].QUICK_GRID[0]
    result = ATTACKS[name].attack(runner.public_view(box), data, student, BUDGET, **settings)
    assert isinstance(result, AttackResult)
    assert result.accuracy == pytest.approx(score_of(result.student, data), abs=1e-4)  # the reported figure is the student's
    assert not result.student.training
    json.dumps(result.settings)
    json.dumps({k: v for k, v in result.extra.items() if k != "key_candidate"})


def test_key_search_moves_the_candidate_downhill(box, data):
    budget = Budget(epochs=1, batch_size=100, key_search_steps=20, seed=3)
    start = torch.rand(tuple(box.box_config.input_size), generator=torch.Generator().manual_seed(budget.seed + 1))
    candidate, losses = search_key(runner.public_view(box), data, budget, None, lr=0.05)
    initial = (start - torch.tensor(CIFAR10_MEAN).view(-1, 1, 1)) / torch.tensor(CIFAR10_STD).view(-1, 1, 1)
    assert len(losses) == 20 and all(math.isfinite(v) for v in losses)
    assert (candidate - initial).abs().max() > 0.05
    assert sum(losses[-5:]) < sum(losses[:5])


@pytest.mark.parametrize("k", [1, 2, 3])
def test_topk_mask_keeps_exactly_k_finite_logits(k):
    logits = torch.randn(16, 10)
    masked = topk_mask(logits, k)
    assert (torch.isfinite(masked).sum(1) == k).all()
    kept = torch.isfinite(masked)
    assert torch.equal(masked[kept], logits[kept])
    assert (logits[kept].view(16, k).min(1).values >= logits.masked_fill(kept, float("-inf")).max(1).values).all()


def test_topk_rejects_other_k():
    with pytest.raises(ValueError, match=r"Expected `k` in \{1, 2, 3\}, but got 5"):
        topk_mask(torch.randn(2, 10), 5)


def test_attacks_never_receive_the_key(box, data, monkeypatch, tmp_path):
    for name, module in ATTACKS.items():
        assert "key" not in inspect.signature(module.attack).parameters, name
    seen = []

    def spy(public, *args, **kwargs):
        seen.append(public)
        with pytest.raises(SdboxError):
            public.key
        return AttackResult(student(), 10.0, {})

    for module in ATTACKS.values():
        monkeypatch.setattr(module, "attack", spy)
    assert box._key is not None  # the harness holds it
    run_attacks(box, data, student, BUDGET, key=box.key, out=tmp_path)
    assert len(seen) == len(runner.plan(True))
    assert all(b is not box and b._key is None for b in seen)


def test_attacks_json_schema_and_markdown(box, data, tmp_path):
    report = run_attacks(box, data, student, BUDGET, key=box.key, attacks=["hard_label", "key_search"], out=tmp_path, meta={"box": "tiny"})
    meta = json.loads((tmp_path / "attacks_meta.json").read_text())
    assert meta["box"] == "tiny" and {"budget", "wall_s", "seed", "quick"} <= set(meta)
    rows = json.loads((tmp_path / "attacks.json").read_text())
    assert rows == json.loads(json.dumps(report["results"]))
    assert [r["attack"] for r in rows] == ["scratch", "key_holder", "hard_label", "key_search"]
    for r in rows:
        assert {"attack", "settings", "student_acc", "gap_to_scratch", "gap_to_key_holder", "strongest"} <= set(r)
        assert r["gap_to_scratch"] == pytest.approx(r["student_acc"] - rows[0]["student_acc"], abs=0.011)
        assert r["gap_to_key_holder"] == pytest.approx(r["student_acc"] - rows[1]["student_acc"], abs=0.011)
    attack_rows = [r for r in rows if r["kind"] == "attack"]
    assert any(r["strongest"] for r in attack_rows) and not any(r["strongest"] for r in rows[:2])
    distance = rows[3]["extra"]["candidate_vs_key"]
    chance = rows[3]["extra"]["random_key_vs_key"]
    # a 3,072-value κ̂ from 8 search steps is nowhere near κ: like a fresh random key, almost orthogonal to it
    assert abs(distance["cosine"]) < 0.2 and abs(chance["cosine"]) < 0.2
    assert distance["rel_l2"] > 0.5 and chance["rel_l2"] > 0.5
    table = attacks_markdown(report)
    assert table.count("\n") == len(rows) + 2 and "| **" in table


def test_key_distance_by_hand():
    key = torch.tensor([[[1.0, 0.0]]])
    assert runner.key_distance(key, key) == {"rel_l2": 0.0, "cosine": 1.0}
    assert runner.key_distance(-key, key) == {"rel_l2": 2.0, "cosine": -1.0}
    assert runner.key_distance(torch.tensor([[[0.0, 3.0]]]), key) == {"rel_l2": round(10**0.5, 4), "cosine": 0.0}


def test_the_attack_runner_leaves_the_global_rng_alone():
    """Seeding each student used to reseed the caller's global generator."""
    from sdbox.attacks.base import new_student

    state = torch.random.get_rng_state()
    first = new_student(student, BUDGET)
    assert torch.equal(torch.random.get_rng_state(), state)
    again = new_student(student, BUDGET)  # and the seeding still works: the same initial weights
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))


def test_cli_end_to_end(box, tmp_path, capsys):
    from sdbox.attacks.cli import add_parsers
    import argparse

    box.save_pretrained(tmp_path / "box")
    box.key.save(tmp_path / "owner.key")
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers())
    args = parser.parse_args([
        "attack", "--box", str(tmp_path / "box"), "--data", str(DATA), "--out", str(tmp_path / "out"), "--key", str(tmp_path / "owner.key"),
        "--quick", "--attacks", "hard_label", "--epochs", "1", "--train-limit", "100", "--test-limit", "50", "--device", "cpu",
    ])
    assert args.run(args) == 0
    rows = json.loads((tmp_path / "out" / "attacks.json").read_text())
    assert [r["attack"] for r in rows] == ["scratch", "key_holder", "hard_label"]
    # Not a terminal: one line per finished row with the command's progress, and the wall time at the end.
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sdbox attack:")]
    assert [line.split(" done,")[0] for line in err[:3]] == ["sdbox attack: scratch", "sdbox attack: key_holder", "sdbox attack: hard_label"]
    assert "3/3 rows" in err[2] and "finished in" in err[-1]
