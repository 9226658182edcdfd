"""Scale-out on the engines users already run: tf.distribute (TensorFlow) and keras.distribution (JAX).

`--batch-size` stays per replica: the global batch is `batch_size x replicas`,
and the learning rate follows the linear scaling rule, `lr x replicas`.
Only the chief (JAX process 0) writes the run folder; the other processes write
to temporary folders that are removed at the end (they still run every
distributed step, evaluation included, as collective ops need them).
"""

import contextlib
import dataclasses
import os

from alexnet.errors import UsageError
from alexnet.settings.choices import STRATEGIES, check, strategies_on


@dataclasses.dataclass
class Plan:
    """What runs where, resolved from --strategy for the current backend and hardware."""

    strategy: str  # what was chosen: none, mirrored, multiworker, data-parallel
    replicas: int  # model copies that share a step
    is_chief: bool  # this process writes the run folder
    worker: str  # this process, for messages ("worker 1 of 2")
    engine: object = None  # the tf.distribute strategy, or the keras.distribution object
    shard: tuple = (0, 1)  # (this process, processes): the share of each global batch this process feeds

    def scope(self):
        """The context to build and compile the model in."""
        if self.engine is not None and hasattr(self.engine, "scope"):
            return self.engine.scope()
        return contextlib.nullcontext()

    def global_batch(self, batch_size):
        """Images per step, all replicas together, for a per-replica `batch_size`: the one rule."""
        return batch_size * self.replicas

    def global_lr(self, lr):
        """The learning rate of a step over the global batch: the linear scaling rule."""
        return lr * self.replicas

    def describe(self, batch_size, lr):
        return {"strategy": self.strategy, "replicas": self.replicas, "worker": self.worker,
                "batch_size_per_replica": batch_size, "global_batch": self.global_batch(batch_size),
                "lr_rule": f"linear scaling: lr x replicas = {lr:g} x {self.replicas}",
                "lr": self.global_lr(lr)}


def plan(strategy="auto", gpus=0):
    """Resolves --strategy for the Keras backend in use.

    Args:
        strategy: one of choices.STRATEGIES.
        gpus: local GPUs the backend sees (for "auto").

    Raises:
        UsageError: If the strategy does not exist on this backend or lacks its set-up (TF_CONFIG).
    """
    import keras

    backend = keras.backend.backend()
    check("--strategy", strategy, STRATEGIES)
    if strategy == "auto":
        strategy = "none" if gpus < 2 else {"tensorflow": "mirrored", "jax": "data-parallel"}.get(backend, "none")
    if strategy == "none":
        return Plan("none", 1, True, "single process")
    if strategy == "multiworker" and backend == "tensorflow":
        # MultiWorkerMirroredStrategy: Keras 3's `fit` cannot train under it (keras-team/keras#20585, open). Tried
        # here with Keras 3.15 and TensorFlow 2.21 on two localhost workers: the first step fails inside Keras's
        # TensorFlow trainer (the per-replica reduction of the first batch, then of the step's logs). Refused
        # up front rather than failing after the data has loaded.
        raise UsageError(
            "--strategy multiworker: Keras 3 cannot train under tf.distribute.MultiWorkerMirroredStrategy "
            "(keras-team/keras#20585). For several machines use the JAX backend: --backend jax --strategy "
            "data-parallel with JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID set on each "
            "(see the README); for several GPUs in one machine, --strategy mirrored.")
    if backend not in STRATEGIES[strategy]:
        raise UsageError(f"--strategy {strategy} does not exist on the {backend} backend; "
                         f"it supports {', '.join(strategies_on(backend))}")
    return _mirrored_plan() if strategy == "mirrored" else _jax_plan()


def _mirrored_plan():
    import tensorflow as tf

    # All local GPUs; without any, the CPU's logical devices (one, unless the process configured more).
    devices = [d.name for d in tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")]
    engine = tf.distribute.MirroredStrategy(devices=devices)
    return Plan("mirrored", engine.num_replicas_in_sync, True, "single process", engine)


def initialize_processes(strategy):
    """Joins the processes of a multi-host JAX job; must run before any other JAX call.

    Several processes (hosts) join through jax.distributed.initialize, from
    JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID, or from
    Slurm's variables, which JAX reads itself. A no-op for one process.
    """
    import keras

    if keras.backend.backend() != "jax" or strategy not in ("auto", "data-parallel"):
        return
    import jax

    # JAX's preemption service installs its own SIGTERM handler, over the run's (callbacks.DeferredInterrupt),
    # and only its reached_preemption_sync_point reads it: the signal would be swallowed. The run's handler
    # stops every process at one step itself, for Ctrl-C and SIGUSR1 too.
    jax.config.update("jax_enable_preemption_service", False)
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        try:
            jax.distributed.initialize(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
                                       num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
                                       process_id=int(os.environ["JAX_PROCESS_ID"]))
        except KeyError as error:
            raise UsageError(f"JAX_COORDINATOR_ADDRESS is set but {error.args[0]} is not") from None
    elif os.environ.get("SLURM_JOB_ID") and int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        jax.distributed.initialize()


def _jax_plan():
    """keras.distribution.DataParallel over every device of every process (see initialize_processes)."""
    import jax
    import keras

    devices = jax.devices()
    # Each process feeds its own share of every global batch (pipeline.make_dataset's `shard`), so Keras
    # must not shard again; it only does that for tf.data anyway.
    engine = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    keras.distribution.set_distribution(engine)
    return Plan("data-parallel", len(devices), jax.process_index() == 0,
                f"process {jax.process_index()} of {jax.process_count()}", engine,
                shard=(jax.process_index(), jax.process_count()))

