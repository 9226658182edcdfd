"""One function per subcommand of `alexnet`: its parsed flags onto the API, and what it prints.

Each imports what it needs when it runs, so that `alexnet --help` and a usage error stay fast and Keras loads
only once `alexnet.cli.main` has chosen the backend (train and resume choose their own).
"""

import logging
import sys
from pathlib import Path

from alexnet.errors import UsageError
from alexnet.settings.config import TrainConfig

log = logging.getLogger(__name__)


def _train(args):
    from alexnet.training.start import resume, train  # does not load Keras: train and resume choose the backend

    given = {k: v for k, v in vars(args).items() if k not in ("command", "debug", "quiet")}
    run_dir = given.pop("resume", None)
    if run_dir is None:
        return train(TrainConfig.from_flags(given))
    extra = sorted(set(given) - {"epochs"})
    if extra:
        flags = ", ".join("--" + k.replace("_", "-") for k in extra)
        raise UsageError(f"--resume continues a run with its own settings; only --epochs may change. Received: {flags}")
    return resume(run_dir, epochs=given.get("epochs"))


def _evaluate(args):
    from alexnet.results.evaluation import evaluate
    from alexnet.results.report import summary_lines
    from alexnet.runs import REPORT_MD

    report = evaluate(args.target, data=args.data, batch_size=args.batch_size, limit_test=args.limit_test,
                      out=args.out, tta=args.tta, ten_crop=args.ten_crop)
    for line in summary_lines(report):
        log.info(line)
    log.info(f"Report: {report['out']}/{REPORT_MD}")


def _predict(args):
    import json

    from alexnet.results.prediction import predict, write_table

    out = args.out
    if out is not None and not out.lower().endswith((".csv", ".json")):
        raise UsageError(f"--out {out}: the table is written as CSV or JSON; name a .csv or .json file")
    if out is not None and not Path(out).resolve().parent.is_dir():  # before the images, not after
        raise UsageError(f"--out {out}: the folder {Path(out).parent} does not exist")
    results = predict(args.target, args.images, top_k=args.top_k, tta=args.tta, explain=args.explain)
    failed = [r for r in results if "error" in r]
    if out is not None:
        write_table(results, out)
        log.info(f"Predicted {len(results) - len(failed)} image(s) into {out}"
                 + (f"; {len(failed)} could not be read (their rows say why)" if failed else "")
                 + (f"; Grad-CAM overlays in {args.explain}" if args.explain else ""))
        return 1 if failed else 0
    if args.json:
        print(json.dumps(results, indent=2))
    for result in results:
        if "error" in result:
            print(f"alexnet: error: {result['file']}: {result['error']}", file=sys.stderr)
        elif not args.json:
            answers = ", ".join(f"{p['class']} {p['probability']:.1%}" for p in result["predictions"])
            print(f"{result['file']}: {answers}")
    return 1 if failed else 0


def _inspect(args):
    from alexnet.results.inspection import inspect

    result = inspect(args.target, data=args.data, out=args.out, neighbours_from=args.neighbours_from, seed=args.seed)
    log.info(f"Pictures in {result['out']}: " + ", ".join(p.rsplit("/", 1)[-1] for p in result["pictures"]))


def _export(args):
    from alexnet.results.exporting import export

    result = export(args.target, format=args.format, out=args.out, data=args.data, check_images=args.check_images)
    ties = f" ({result['ties']} disagreement(s) between classes tied within the tolerance)" if result["ties"] else ""
    log.info(f"Wrote {result['path']} ({result['bytes'] / 1e6:.1f} MB). Checked with {result['runtime']} on "
             f"{result['images']} images: top-1 agreement {result['agreement']:.2%}{ties}, largest probability "
             f"difference {result['max_abs_diff']:.1e}")
    if "agreement_with_trained" in result:
        log.info(f"The export computes in float32; the model trained in {result['trained_dtype_policy']}: their top-1 "
                 f"classes agree on {result['agreement_with_trained']:.2%} of the images")


def _import_weights(args):
    from alexnet.model.importing import import_weights

    result = import_weights(args.weights, args.out, class_names=args.class_names, overwrite=args.overwrite)
    log.info(f"Wrote {result['path']}: alexnet-torchvision, {result['classes']} classes ({result['names']}), "
             f"{result['parameters']:,} parameters, float32; from {args.weights} (sha256 {result['sha256'][:12]}...)")


def _summary(args):
    from alexnet.model.architecture import VARIANTS
    from alexnet.model.builders import build_model

    size = args.image_size or VARIANTS[args.model].image_size
    try:
        model = build_model(args.model, input_shape=(*args.input_size, 3), num_classes=args.num_classes,
                            image_size=size)
    except ValueError as error:
        raise UsageError(str(error)) from None
    model.summary()
    print(f"{args.model}: {model.count_params():,} parameters at {size}x{size}x3, {args.num_classes} classes")


def _samples(args):
    from alexnet.data import load_dataset
    from alexnet.results.plots import sample_grid

    folder = Path(args.out).parent
    if not folder.is_dir():  # before the data loads, which can take a while
        raise UsageError(f"--out {args.out}: the folder {folder} does not exist")
    dataset = load_dataset(args.data)
    sample_grid(dataset.x_train, dataset.y_train, dataset.class_names, args.out, count=args.count, seed=args.seed)
    log.info(f"Wrote {args.out}")


COMMANDS = {"train": _train, "evaluate": _evaluate, "predict": _predict, "inspect": _inspect, "export": _export,
            "import-weights": _import_weights, "summary": _summary, "samples": _samples}
