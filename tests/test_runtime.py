import os
import subprocess
import sys

import pytest
import torch

from modicl.config import ConfigError, TrainConfig
from modicl.runtime import (
    cpu_has_native_bf16,
    cpu_kind,
    numerics,
    resolve_compile,
    resolve_device,
    resolve_dtype,
    restores_threads,
    setup_process,
)


def test_evaluation_and_analysis_import_no_training_code():
    code = (
        "import sys, modicl.analysis.registry, modicl.evaluation, modicl.runtime, modicl.cli; "
        "print(sorted(m for m in sys.modules if m in ('modicl.training', 'modicl.ensemble', 'modicl.bench')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_auto_settings_resolve_to_the_cpu_in_fp32_or_native_bf16_without_compiling():
    cpu = torch.device("cpu")
    assert resolve_device("cpu") == cpu
    assert resolve_dtype("fp32", cpu) == torch.float32 and resolve_dtype("bf16", cpu) == torch.bfloat16
    assert resolve_dtype("auto", cpu) == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)
    assert cpu_has_native_bf16() == (cpu_kind() in ("amx", "avx512_bf16")) or cpu_kind() not in (
        "amx",
        "avx512_bf16",
        "avx512",
        "avx2",
    )
    assert not resolve_compile("auto", cpu) and resolve_compile("on", cpu) and not resolve_compile("off", cpu)


@pytest.mark.parametrize("name", ["tpu", "cuda:99"] + ([] if torch.cuda.is_available() else ["cuda"]))
def test_a_device_this_machine_cannot_use_is_a_config_error(name):
    with pytest.raises(ConfigError):
        resolve_device(name)


def test_setup_process_sets_the_threads_and_restores_threads_puts_them_back():
    before = torch.get_num_threads()

    @restores_threads
    def run():
        setup_process(TrainConfig(threads=1, device="cpu"))
        return numerics()

    assert run()["threads"] == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    "flags, env, kind, bf16",
    [
        ({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, {}, "amx", True),
        ({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, {"ATEN_CPU_CAPABILITY": "avx2"}, "avx2", False),
        ({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, "avx512", False),
        (
            {"avx2", "avx512f", "avx512_bf16", "amx_bf16"},
            {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"},
            "avx512_bf16",
            True,
        ),
        (
            {"avx2", "avx512f", "avx512_bf16"},
            {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"},
            "avx512_bf16",
            True,
        ),  # a cap never raises
        ({"avx2"}, {}, "avx2", False),
        ({"avx2", "avx512f"}, {"ONEDNN_MAX_CPU_ISA": "AVX"}, "machine", False),
        ({"avx2", "avx512f"}, {"ONEDNN_MAX_CPU_ISA": "SSE41"}, "machine", False),
    ],
)
def test_isa_caps_in_the_environment_lower_the_cpu_kind_and_with_it_auto_bf16(monkeypatch, flags, env, kind, bf16):
    import modicl.runtime as rt

    monkeypatch.setattr(rt, "_cpu_flags", lambda: frozenset(flags))
    for var in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert rt.cpu_kind() == (os.uname().machine if kind == "machine" else kind)  # below AVX2: the architecture
    assert rt.cpu_has_native_bf16() is bf16
    assert rt.resolve_dtype("auto", torch.device("cpu")) == (torch.bfloat16 if bf16 else torch.float32)
