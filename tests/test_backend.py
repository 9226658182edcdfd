import os
import subprocess
import sys
import textwrap

import keras
import pytest
from conftest import TINY, run_cli

from alexnet import backend, console
from alexnet.training.logs import TimeEstimate


@pytest.mark.parametrize("bf16", [True, False])
def test_cpu_speed_settings(monkeypatch, bf16):
    monkeypatch.setattr(backend, "gpu_count", lambda: 0)
    monkeypatch.setattr(backend, "cpu_has_fast_bf16", lambda: bf16)
    settings = backend.speed_settings()
    name = keras.backend.backend()  # the suite runs on each backend: JAX always compiles, and its CPU bfloat16
    expected = "mixed_bfloat16" if bf16 and name != "jax" else "float32"  # was measured slower
    assert ("onednn" in settings) is (name == "tensorflow")
    settings.pop("onednn", None)
    assert settings == {"device": "cpu", "gpus": 0, "jit": name == "jax", "dtype_policy": expected}
    assert backend.speed_settings(jit=True, mixed_precision=False)["dtype_policy"] == "float32"


@pytest.mark.parametrize("cpuinfo,fast", [
    ("vendor_id\t: AuthenticAMD\nflags\t\t: fpu avx512f avx512_bf16 avx512_vnni\n", True),  # Zen 4: 1.6x measured
    ("vendor_id\t: GenuineIntel\nflags\t\t: fpu avx512f avx512_bf16 avx512_fp16\n", False),  # 1.4x slower measured
    ("vendor_id\t: GenuineIntel\nflags\t\t: fpu avx512_bf16 amx_bf16 amx_tile\n", True),  # AMX
    ("vendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2\n", False),
])
def test_bfloat16_only_where_it_was_measured_faster(cpuinfo, fast):
    assert backend.cpu_has_fast_bf16(cpuinfo) is fast


def test_gpu_speed_settings(monkeypatch):
    monkeypatch.setattr(backend, "gpu_count", lambda: 2)
    monkeypatch.setattr(backend, "_gpu_has_bf16", lambda: False)
    jit = keras.backend.backend() != "torch"  # Keras's torch backend has no XLA
    settings = backend.speed_settings()
    settings.pop("onednn", None)
    assert settings == {"device": "gpu", "gpus": 2, "jit": jit, "dtype_policy": "mixed_float16"}


@pytest.mark.parametrize("files,present", [
    ([], False),
    (["dev/nvidia0", "dev/nvidiactl", "dev/nvidia-uvm"], True),
    (["dev/nvidia3"], True),  # a container given the host's fourth GPU only
    (["dev/nvidiactl", "dev/nvidia-uvm"], False),  # the driver's control nodes, no GPU
    (["proc/driver/nvidia/gpus/0000:00:1e.0/information"], False),  # /proc/driver shows the host's GPUs in containers
])
def test_nvidia_gpu_present_from_the_device_nodes(tmp_path, files, present):
    for file in files:
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / file).touch()
    assert backend.nvidia_gpu_present(tmp_path) is present


@pytest.mark.parametrize("name,install", [("tensorflow", 'pip install -e ".[gpu]" (tensorflow[and-cuda])'),
                                          ("jax", 'pip install -e ".[gpu]" (jax[cuda12])'),
                                          ("torch", "a CUDA build of torch")])
@pytest.mark.parametrize("device_node,visible,said", [
    ("nvidia0", None, True),
    (None, None, False),  # no GPU: nothing to say
    ("nvidia0", "", False),  # CUDA_VISIBLE_DEVICES="" hides the GPUs on purpose
])
def test_a_gpu_the_backend_does_not_see_is_said_once_with_what_to_install(
        monkeypatch, capsys, tmp_path, name, install, device_node, visible, said):
    (tmp_path / "dev").mkdir()
    if device_node:
        (tmp_path / "dev" / device_node).touch()
    present = backend.nvidia_gpu_present
    monkeypatch.setattr(backend, "nvidia_gpu_present", lambda: present(tmp_path))
    monkeypatch.setattr(keras.backend, "backend", lambda: name)
    monkeypatch.setattr(backend, "gpu_count", lambda: 0)
    monkeypatch.setattr(backend, "onednn_enabled", lambda: True)
    monkeypatch.setitem(backend._said, "gpu_unseen", False)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    for _ in range(2):
        assert backend.speed_settings(jit=False)["device"] == "cpu"
    err = capsys.readouterr().err
    line = f"note: an NVIDIA GPU is present but the {name} backend does not see it"
    assert err.count(line) == int(said), err
    assert (install in err) is said


@pytest.mark.parametrize("capability,bf16,noted", [
    ((8, 0), True, False),  # Ampere
    ((7, 5), False, False),  # Turing: float16
    (RuntimeError("CUDA driver initialization failed"), False, True),
    (AssertionError("Invalid device id"), False, True),
])
def test_gpu_bfloat16_from_the_compute_capability_and_a_note_when_it_cannot_be_read(
        monkeypatch, capsys, capability, bf16, noted):
    torch = pytest.importorskip("torch")

    def read(device):
        if isinstance(capability, Exception):
            raise capability
        return capability

    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    monkeypatch.setattr(torch.cuda, "get_device_capability", read)
    monkeypatch.setattr(backend, "gpu_count", lambda: 1)
    monkeypatch.setitem(backend._said, "gpu_capability", False)
    for _ in range(2):
        assert backend.speed_settings()["dtype_policy"] == ("mixed_bfloat16" if bf16 else "mixed_float16")
    err = capsys.readouterr().err
    assert err.count("note: could not read the GPU's compute capability on the torch backend") == int(noted), err
    if noted:
        assert f"({type(capability).__name__}: {capability})" in err and "--no-mixed-precision" in err


def test_gpu_capability_errors_other_than_an_unreadable_one_are_not_swallowed(monkeypatch):
    torch = pytest.importorskip("torch")

    def read(device):
        raise TypeError("a bug of ours")

    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    monkeypatch.setattr(torch.cuda, "get_device_capability", read)
    with pytest.raises(TypeError, match="a bug of ours"):
        backend._gpu_has_bf16()


def test_tensorflow_gpu_without_a_compute_capability_gets_float16_and_a_note(monkeypatch, capsys):
    tf = pytest.importorskip("tensorflow")
    monkeypatch.setattr(keras.backend, "backend", lambda: "tensorflow")
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["a GPU"])
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda device: {"device_name": "AMD"})
    monkeypatch.setitem(backend._said, "gpu_capability", False)
    assert backend._gpu_has_bf16() is False
    assert "(the backend does not report it): mixed precision computes in float16" in capsys.readouterr().err


@pytest.mark.parametrize("given,expected", [(None, True), ("0", False)])
def test_tensorflow_runs_onednn_kernels_unless_the_user_says_otherwise(given, expected):
    # TensorFlow turns oneDNN on by itself only on AVX-512 VNNI/BF16/AMX CPUs; without it an AVX2 CPU trains 2-3x slower
    pytest.importorskip("tensorflow")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if given is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = given
    code = ("from alexnet import backend; backend.select_backend('tensorflow'); backend.load_keras(); "
            "s = backend.speed_settings(); print(s['onednn'], backend.onednn_enabled())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(expected)] * 2


def test_backend_cannot_change_once_keras_runs(monkeypatch):
    other = "jax" if keras.backend.backend() != "jax" else "torch"
    monkeypatch.setattr(backend.importlib.util, "find_spec", lambda name, *a: object())  # installed or not
    with pytest.raises(ValueError, match="must be chosen before Keras loads"):
        backend.select_backend(other)
    with pytest.raises(ValueError, match="Received: 'mxnet'"):
        backend.select_backend("mxnet")


@pytest.mark.parametrize("device,suggests", [("cpu", True), ("gpu", False)])
def test_time_estimate_warns_about_a_long_cpu_run(monkeypatch, capsys, device, suggests):
    clock = iter(range(0, 100, 4))  # read after step 1 and step 3: 2 s a step
    monkeypatch.setattr("alexnet.training.logs.time.perf_counter", lambda: next(clock))
    callback = TimeEstimate(epochs_left=50, device=device, warmup_steps=1, measured_steps=2)
    callback.set_params({"steps": 1000})
    for step in range(4):
        callback.on_train_batch_end(step)
    out = capsys.readouterr().out
    assert "Measured 2 s/step: about 33 min per epoch, 27.8 h for the 50 epoch(s) to go" in out
    assert ("--image-size" in out) == suggests


def _has(module):
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


BLOCK_TENSORFLOW = textwrap.dedent("""
    import sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                raise ImportError("TensorFlow is blocked for this test")
    sys.meta_path.insert(0, _Block())
""")


@pytest.mark.parametrize("name,without_tensorflow", [("jax", True), ("torch", False)])
def test_other_backends_train_end_to_end(name, without_tensorflow, cifar_slice, tmp_path):
    if not _has(name):
        pytest.skip(f"{name} is not installed (pip install -e '.[{name}]')")
    env = {"KERAS_BACKEND": name}
    if without_tensorflow:  # as on the GPU machines, which have JAX but no TensorFlow
        (tmp_path / "block").mkdir()
        (tmp_path / "block" / "sitecustomize.py").write_text(BLOCK_TENSORFLOW)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path / "block"), os.environ.get("PYTHONPATH")]))
    run_dir = tmp_path / "run"
    result = run_cli("train", "--data", cifar_slice, "--epochs", "1", *TINY, "--limit-train", "128",
                     "--limit-test", "64", "--run-dir", run_dir, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Backend {name} on cpu" in result.stdout
    for file in ("model.keras", "metrics.json", "report.json", "history.csv", "checkpoints/epoch-0001.keras"):
        assert (run_dir / file).is_file(), file
    assert (run_dir / "logs").is_dir() != without_tensorflow


def test_native_log_lines_are_dropped_and_everything_else_passes(capfd):
    import os

    with console.native_logs_filtered():
        os.write(2, b"E0000 00:00:1795862049.131149   31933 cuda_platform.cc:52] failed call to cuInit\n")
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"alexnet: error: a line of ours\n")
        os.write(2, b"I1128 10:20:30.123456   123 port.cc:153] oneDNN custom operations are on\nsecond line\n")
        os.write(2, b"\rbar 50%")  # a partial line with a carriage return: shown at once, not held back
        os.write(2, b"\rbar 100%\n")
    err = capfd.readouterr().err
    assert err == "alexnet: error: a line of ours\nsecond line\n\rbar 50%\rbar 100%\n"


def test_jit_asked_on_torch_is_off_and_said_once(monkeypatch, capsys):
    import keras

    from alexnet import backend

    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    monkeypatch.setattr(backend, "gpu_count", lambda: 0)
    monkeypatch.setattr(backend, "nvidia_gpu_present", lambda: False)  # a GPU machine's CPU-only backend notes it
    monkeypatch.setitem(backend._said, "torch_jit", False)
    assert backend.speed_settings(jit=None)["jit"] is False
    assert capsys.readouterr().err == ""  # not asked: nothing to say
    assert backend.speed_settings(jit=True)["jit"] is False
    assert backend.speed_settings(jit=True)["jit"] is False
    err = capsys.readouterr().err
    assert err.count("note: --jit has no effect on the torch backend") == 1, err


def test_the_augmenting_recipes_compile_with_jit_on_jax():
    """Keras marked RandomTranslation, the shifts once, as not XLA-compilable on every backend and then compiled no
    model that held it: on JAX the fast and cpu recipes ran op by op (1.8x slower on a CPU, worse on a GPU)."""
    pytest.importorskip("jax")
    code = ("from alexnet.backend import select_backend; select_backend('jax'); "
            "from alexnet.model import compiling; from alexnet.settings.config import TrainConfig; from alexnet.model.builders import build_model; "
            "model = build_model('alexnet', (32, 32, 3), 10, 67, augmentation=compiling.augmentation('cpu', 0)); "
            "compiling.compile_model(model, TrainConfig(recipe='cpu'), 10, jit=True); print(model.jit_compile)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "True", done.stderr[-3000:]


def test_jax_on_a_gpu_keeps_its_compiles_in_the_package_cache(tmp_path, monkeypatch):
    jax = pytest.importorskip("jax")
    monkeypatch.setenv("ALEXNET_CACHE_DIR", str(tmp_path))
    before = jax.config.jax_compilation_cache_dir
    try:
        folder = backend._jax_compilation_cache()
        assert folder == str(tmp_path / "jax-compilation") == jax.config.jax_compilation_cache_dir
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
