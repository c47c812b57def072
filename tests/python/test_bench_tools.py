"""The benchmark tools: random-weight GGUF writers (bench/make_random_model.py, bench/random_gguf.py),
the read-bandwidth probe, bench/speed.py's weight-byte count and bench/compare_llamacpp.py's
argument and result handling (an end-to-end comparison only when llama_cpp is importable here),
and short end-to-end runs of bench/batch_decode.py and bench/serve.py on the demo model."""

import importlib.util
import json
import math
import pathlib
import sys

import gguf
import numpy as np
import pytest

import pyakvq
from pyakvq import _akvq

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import batch_decode  # noqa: E402  (bench/ is not a package)
import compare_llamacpp  # noqa: E402
import kv_speed  # noqa: E402
import make_random_model  # noqa: E402
import random_gguf  # noqa: E402
import serve as serve_bench  # noqa: E402
import speed  # noqa: E402

TYPES = sorted(random_gguf.WEIGHT_TYPES)


@pytest.fixture(scope="module")
def test_models(tmp_path_factory) -> dict[str, pathlib.Path]:
    d = tmp_path_factory.mktemp("random_models")
    out = {}
    for t in TYPES:
        out[t] = d / f"test_{t}.gguf"
        assert make_random_model.main([str(out[t]), "--shape", "test", "--type", t, "--quiet"]) == 0
    return out


@pytest.mark.parametrize("wtype", TYPES)
def test_random_model_loads_and_evaluates(test_models, wtype):
    path = test_models[wtype]
    hp = make_random_model.SHAPES["test"]
    with pyakvq.Model(str(path), n_ctx=64, n_threads=2) as m:
        assert m.info["n_layer"] == hp.n_layer and m.info["n_head_kv"] == hp.n_head_kv
        ids = m.tokenize("Hello world\nand more")
        logits = np.asarray(m._sess().eval(ids))
        assert logits.shape[-1] == hp.n_vocab
        assert np.isfinite(logits).all()


@pytest.mark.parametrize("wtype", TYPES)
def test_random_model_weights_are_sane(test_models, wtype):
    r = gguf.GGUFReader(str(test_models[wtype]))
    plan = {s.name: s for s in random_gguf.llama_tensors(make_random_model.SHAPES["test"], wtype)}
    assert sorted(t.name for t in r.tensors) == sorted(plan)
    for t in r.tensors:
        assert int(t.n_bytes) == random_gguf.tensor_nbytes(plan[t.name])
        x = gguf.quants.dequantize(t.data, t.tensor_type)
        assert np.isfinite(x).all(), t.name
        if plan[t.name].kind == "norm":
            assert abs(float(x.mean()) - 1.0) < 0.1, t.name
        else:
            assert t.tensor_type == random_gguf.WEIGHT_TYPES[wtype].ggml
            assert 0.5 * random_gguf.WEIGHT_STD < float(x.std()) < 2 * random_gguf.WEIGHT_STD, t.name
            assert abs(float(x.mean())) < 0.25 * random_gguf.WEIGHT_STD, t.name
    vocab = r.fields["tokenizer.ggml.tokens"]
    assert len(vocab.data) == make_random_model.SHAPES["test"].n_vocab
    assert r.fields["tokenizer.ggml.model"].contents() == "llama"
    assert "<0x0A>" in vocab.contents()  # the newline byte token llama.cpp looks up


def test_q4_k_m_mix_places_q6_k_as_llama_cpp_does(tmp_path):
    """--type q4_k_m: Q6_K for output.weight and for attn_v / ffn_down of the layers llama.cpp's
    more-bits rule picks, Q4_K elsewhere; the file loads, evaluates and dequantizes sanely."""
    assert [random_gguf.more_bits(i, 32) for i in range(8)] == [True] * 4 + [False, False, True, False]
    assert [random_gguf.more_bits(i, 32) for i in range(28, 32)] == [True] * 4
    out = tmp_path / "test_q4_k_m.gguf"
    assert make_random_model.main([str(out), "--shape", "test", "--type", "q4_k_m", "--quiet"]) == 0
    r = gguf.GGUFReader(str(out))
    n_layer = make_random_model.SHAPES["test"].n_layer
    q6 = gguf.GGMLQuantizationType.Q6_K
    for t in r.tensors:
        if t.name.endswith("norm.weight"):
            continue
        parts = t.name.split(".")  # blk.<i>.<name>.weight, or token_embd / output
        more = t.name == "output.weight" or (
            parts[0] == "blk" and parts[2] in ("attn_v", "ffn_down") and random_gguf.more_bits(int(parts[1]), n_layer))
        assert (t.tensor_type == q6) == more, t.name
        x = gguf.quants.dequantize(t.data, t.tensor_type)
        assert 0.5 * random_gguf.WEIGHT_STD < float(x.std()) < 2 * random_gguf.WEIGHT_STD, t.name
    assert {t.tensor_type for t in r.tensors if ".attn_v." in t.name} == {q6, gguf.GGMLQuantizationType.Q4_K}
    assert r.fields["general.file_type"].contents() == 15
    with pyakvq.Model(str(out), n_ctx=64, n_threads=2) as m:
        logits = np.asarray(m._sess().eval(m.tokenize("Hello world")))
        assert np.isfinite(logits).all()


def test_llava_plan_sizes():
    spec = importlib.util.spec_from_file_location("make_random_llava", BENCH / "make_random_llava.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    plan = mod.tensor_plan()
    assert len({s.name for s in plan}) == len(plan)
    assert all(random_gguf.tensor_nbytes(s) > 0 for s in plan)


def test_tensor_nbytes_rejects_partial_blocks():
    with pytest.raises(ValueError, match="multiple of 256"):
        random_gguf.tensor_nbytes(random_gguf.TensorSpec("x", (4, 100), "q4_k"))
    with pytest.raises(ValueError, match="unknown kind"):
        random_gguf.tensor_nbytes(random_gguf.TensorSpec("x", (4, 32), "q5_0"))


def test_decode_weight_bytes(test_models, tmp_path):
    hp = make_random_model.SHAPES["test"]
    plan = random_gguf.llama_tensors(hp, "q8_0")
    embd = random_gguf.tensor_nbytes(plan[0])
    all_bytes = sum(random_gguf.tensor_nbytes(s) for s in plan)
    assert speed.decode_weight_bytes(str(test_models["q8_0"])) == all_bytes - embd
    # tied output: token_embd is the output matrix and counts once
    tied = tmp_path / "tied.gguf"
    w = gguf.GGUFWriter(str(tied), "llama")
    random_gguf.add_llama_keys(w, hp, "tied", 7)
    random_gguf.add_spm_vocab(w, hp.n_vocab)
    tied_plan = random_gguf.llama_tensors(hp, "q8_0", tied=True)
    random_gguf.write_streamed(w, tied_plan, seed=1, progress_every=0)
    assert speed.decode_weight_bytes(str(tied)) == sum(random_gguf.tensor_nbytes(s) for s in tied_plan)


def test_memory_rows():
    rows = speed.memory_rows(2_000_000_000, 40.0, pp=100.0, n_prompt=50, tg=10.0)
    assert rows["tg_weight_gbs"] == pytest.approx(20.0)
    assert rows["tg_bandwidth_fraction"] == pytest.approx(0.5)
    assert rows["pp_weight_gbs"] == pytest.approx(4.0)
    assert "tg_bandwidth_fraction" not in speed.memory_rows(1, None, 1.0, 1, 1.0)


def test_paired_fractions():
    # 2 GB per step: 10 tokens/s = 20 GB/s against the mean of the readings around the run
    f = speed.paired_fractions(2_000_000_000, [10.0, 5.0], [(40.0, 40.0), (30.0, 10.0)])
    assert f == pytest.approx([0.5, 0.5])
    with pytest.raises(ValueError, match="2 generation runs but 1 probe pairs"):
        speed.paired_fractions(1, [1.0, 1.0], [(1.0, 1.0)])


def test_speed_end_to_end_pairs_a_probe_with_every_generation_run(test_models, tmp_path, capsys):
    out = tmp_path / "speed.json"
    args = ["--model", str(test_models["q4_0"]), "--prompt", "8", "--gen", "4", "--reps", "2"]
    assert speed.main([*args, "--bandwidth-mib", "16", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert len(res["gen_runs_tps"]) == 2 and res["gen_tps"] == pytest.approx(np.median(res["gen_runs_tps"]))
    assert len(res["tg_paired_probes_gbs"]) == 2 and all(x > 0 for p in res["tg_paired_probes_gbs"] for x in p)
    w = res["weight_bytes_per_step"]
    runs = zip(res["gen_runs_tps"], res["tg_paired_probes_gbs"], strict=True)
    expect = [w * tg / 1e9 / np.mean(p) for tg, p in runs]
    assert res["tg_paired_fractions"] == pytest.approx(expect)
    # the table's probe figure is the median of those readings, not a reading of its own
    assert res["read_bandwidth_gbs"] == pytest.approx(np.median(res["tg_paired_probes_gbs"]))
    assert "against the probe right before and after each run: median" in capsys.readouterr().out
    # no probe: no fractions, and no probe runs between the generation runs
    assert speed.main([*args, "--bandwidth-mib", "0", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert "tg_paired_fractions" not in res and res["read_bandwidth_gbs"] is None


def test_read_bandwidth_positive():
    bw = _akvq.read_bandwidth_gbs(2, mib=64, reps=2)
    assert math.isfinite(bw) and bw > 0


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"threads": 0}, r"threads = 0 is out of range \[1, 512\]"),
        # not a billion threads started one by one until the system refuses them
        ({"threads": 1 << 30}, r"threads = 1073741824 is out of range \[1, 512\]"),
        ({"threads": 1, "mib": 0}, "mib must be >= 1"),
        ({"threads": 1, "reps": 0}, "reps must be >= 1"),
    ],
)
def test_read_bandwidth_rejects_bad_arguments(kw, msg):
    with pytest.raises(ValueError, match=r"\[bandwidth\] " + msg):
        _akvq.read_bandwidth_gbs(**kw)


def _bench_json(tests: list[dict]) -> str:
    base = {"build_commit": "abc1234", "build_number": 4321, "cpu_info": "Some CPU", "n_threads": 2}
    return json.dumps([base | t for t in tests])


def test_parse_llama_bench():
    text = _bench_json(
        [
            {"n_prompt": 512, "n_gen": 0, "avg_ts": 250.5, "stddev_ts": 1.0},
            {"n_prompt": 0, "n_gen": 64, "avg_ts": 60.25, "stddev_ts": 0.5},
        ]
    )
    pp = compare_llamacpp.parse_llama_bench(text, "pp", 512)
    tg = compare_llamacpp.parse_llama_bench(text, "tg", 64)
    assert pp["tps"] == 250.5 and tg["tps"] == 60.25
    assert pp["build_commit"] == "abc1234" and pp["build_number"] == 4321 and pp["cpu_info"] == "Some CPU"
    with pytest.raises(ValueError, match="no tg128 test"):
        compare_llamacpp.parse_llama_bench(text, "tg", 128)
    with pytest.raises(ValueError, match="not JSON"):
        compare_llamacpp.parse_llama_bench("| model | size |", "pp", 512)
    with pytest.raises(ValueError, match="not an array"):
        compare_llamacpp.parse_llama_bench("{}", "pp", 512)


def test_llama_bench_cmd():
    cmd = compare_llamacpp.llama_bench_cmd("/x/llama-bench", "m.gguf", "tg", 64, 2)
    assert cmd[0] == "/x/llama-bench" and cmd[cmd.index("-n") + 1] == "64" and cmd[cmd.index("-p") + 1] == "0"
    assert cmd[cmd.index("-o") + 1] == "json" and cmd[cmd.index("-t") + 1] == "2"


def test_compare_helpers():
    assert compare_llamacpp.repeat_to([1, 2, 3], 7) == [1, 2, 3, 1, 2, 3, 1]
    with pytest.raises(ValueError):
        compare_llamacpp.repeat_to([], 3)
    assert compare_llamacpp.n_ctx_for(512, 64) >= 512 + 64
    line = compare_llamacpp.last_json_line('noise\n{"tps": 3.5}\nmore noise\n')
    assert line == {"tps": 3.5}
    with pytest.raises(ValueError, match="no JSON"):
        compare_llamacpp.last_json_line("nothing here")
    rows = compare_llamacpp.summarize({("m.gguf", "pp8"): {"llama.cpp": [10.0, 30.0], "pyakvq": [20.0, 40.0]}})
    assert rows[0]["llama.cpp_median"] == 20.0 and rows[0]["ratio"] == pytest.approx(1.5)
    table = compare_llamacpp.format_table(rows)
    assert "| m.gguf | pp8 | 20.0 | 30.0 | 1.50 |" in table


@pytest.mark.parametrize(
    "args",
    [["--pp", "0", "--tg", "0"], ["--threads", "0"], ["--reps", "0"], ["--llama-bench", "/nonexistent/llama-bench"]],
)
def test_compare_rejects_bad_arguments(test_models, args):
    with pytest.raises(SystemExit):
        compare_llamacpp.parse_args(["--model", str(test_models["q4_0"]), *args])


def test_compare_end_to_end(test_models, tmp_path):
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama_cpp (llama-cpp-python) is not importable in this interpreter")
    out = tmp_path / "cmp.json"
    model = str(test_models["q4_0"])
    argv = ["--model", model, "--pp", "16", "--tg", "4", "--reps", "1", "--threads", "1", "--json", str(out)]
    assert compare_llamacpp.main(argv) == 0
    res = json.loads(out.read_text())
    assert [r["workload"] for r in res["rows"]] == ["pp16", "tg4"]
    for r in res["rows"]:
        assert r["llama.cpp_median"] > 0 and r["pyakvq_median"] > 0


def test_compare_act_bits_variants_get_their_own_ratio():
    rows = compare_llamacpp.summarize({("m.gguf", "pp8"): {"llama.cpp": [10.0], "pyakvq": [20.0], "pyakvq-a8": [40.0]}})
    assert rows[0]["ratio"] == pytest.approx(2.0) and rows[0]["ratio_pyakvq-a8"] == pytest.approx(4.0)
    table = compare_llamacpp.format_table(rows)
    assert "pyakvq-a8 t/s" in table and "| 40.0 | 4.00 |" in table
    only8 = compare_llamacpp.summarize({("m.gguf", "tg4"): {"llama.cpp": [10.0], "pyakvq-a8": [5.0]}})
    assert "0.50" in compare_llamacpp.format_table(only8)
    with pytest.raises(SystemExit):
        compare_llamacpp.parse_args(["--model", __file__, "--act-bits", "4"])


def test_batch_decode_end_to_end(capsys):
    assert (
        batch_decode.main(
            ["--model", str(pyakvq.demo_model_path()), "--batches", "1,3", "--seconds", "0.2", "--reps", "1"]
        )
        == 0
    )
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("batch")]
    rates = [float(x.split()[2]) for x in lines]
    assert len(rates) == 2 and all(r > 0 for r in rates)


def test_kv_speed_interleaved_rounds(tmp_path, capsys):
    out = tmp_path / "kv.json"
    args = ["--model", str(pyakvq.demo_model_path()), "--depth", "48", "--gen", "3", "--kv", "f16,akvq2"]
    assert kv_speed.main([*args, "--variant", "akvq2:lut=0", "--rounds", "3", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res) == {"f16", "akvq2", "akvq2:lut=0"}  # a mode with its own options
    for kv, r in res.items():
        assert len(r["rounds"]) == 3 and all(x > 0 for x in r["rounds"]), kv
        assert r["decode_tps"] == sorted(r["rounds"])[1]  # the median of 3
    assert res["f16"]["decode_ratio"] == 1.0
    ratios = sorted(a / b for a, b in zip(res["akvq2"]["rounds"], res["f16"]["rounds"]))
    assert res["akvq2"]["decode_ratio"] == ratios[1]
    assert "3 interleaved rounds" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # the ratios are against the first mode, which must be f16
        kv_speed.main([*args[:-1], "akvq2,f16", "--rounds", "2"])


def test_serve_bench_end_to_end(tmp_path, capsys):
    pytest.importorskip("fastapi")
    pytest.importorskip("openai")
    out = tmp_path / "serve.json"
    argv = [
        "--kv",
        "f16,akvq2",
        "--clients",
        "1,2",
        "--requests",
        "1",
        "--max-tokens",
        "4",
        "--ctx-size",
        "512",
        "--kv-memory",
        "8M",
        "--json",
        str(out),
    ]
    assert serve_bench.main(argv) == 0
    res = json.loads(out.read_text())
    assert [(r["kv"], r["clients"]) for r in res["rows"]] == [("f16", 1), ("f16", 2), ("akvq2", 1), ("akvq2", 2)]
    slots = {r["kv"]: r["slots"] for r in res["rows"]}
    assert slots["akvq2"] > slots["f16"] >= 1  # the same KV memory holds more 2-bit sequences
    for r in res["rows"]:
        assert r["tok_s"] > 0 and 0 < r["p50_s"] <= r["p95_s"]
    assert "| f16 |" in capsys.readouterr().out


def test_batch_decode_at_depth_in_a_memory_budget(smollm2_path, capsys):
    model = str(smollm2_path)
    # 512 tokens: f16 11.8 MB a sequence; akvq2 ~6.6 MB (window + pivots at fp16, their checkpoint
    # copy, the rest at 2 bits): 1 against 2 sequences in 14 MB
    argv = ["--model", model, "--kv", "f16,akvq2", "--kv-memory", "14M", "--ctx", "512", "--depth", "64"]
    assert batch_decode.main(argv + ["--variant", "akvq2:lut=0", "--seconds", "0.2", "--reps", "1"]) == 0
    rows = [x.split("|") for x in capsys.readouterr().out.splitlines() if x.startswith("| f16") or x.startswith("| akvq2")]
    slots = {r[1].strip(): int(r[2]) for r in rows}
    rates = [float(r[4]) for r in rows]
    # each mode holds what the budget buys at --ctx tokens; the 2-bit cache holds more, with or
    # without its table scores (a --variant)
    assert slots["akvq2"] > slots["f16"] >= 1 and all(r > 0 for r in rates)
    assert slots["akvq2:lut=0"] == slots["akvq2"]
    with pytest.raises(SystemExit, match="--depth"):
        batch_decode.main(["--model", model, "--kv-memory", "6M", "--ctx", "64", "--depth", "64"])
    with pytest.raises(SystemExit, match="one mode"):
        batch_decode.main(["--model", model, "--kv", "f16,akvq2"])
