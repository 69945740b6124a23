"""The `unigemma` command line: info, inspect, convert, run."""
from __future__ import annotations

import argparse
import json
import os
import sys


def _cmd_info(args) -> int:
    from . import __version__, build_info

    info = build_info()
    if args.json:
        print(json.dumps({"version": __version__, **info}, indent=1))
        return 0
    print(f"unigemma {__version__}")
    print(f"  CPU ISA path:   {info['selected_isa']} (available: {', '.join(info['available_isas'])})")
    feats = [k for k, v in info["cpu_features"].items() if v]
    print(f"  CPU features:   {', '.join(feats) or 'none detected'}")
    print(f"  threads:        {info['hardware_threads']}")
    print(f"  CUDA backend:   {'built' if info['cuda'] else 'not built'}")
    print(f"  compiler:       {info['compiler']}")
    return 0


def _resolve_model(path):
    if path:
        return path
    from .default_model import default_model_path

    p = default_model_path()
    print(f"(no model given: using the embedded default model {p})", file=sys.stderr)
    return str(p)


def _cmd_inspect(args) -> int:
    from . import open_gguf
    from .inspect_gguf import compare, format_compare, format_summary, summarize, to_json

    if args.compare:
        a, b = (open_gguf(p) for p in args.compare)
        c = compare(a, b)
        print(to_json(c) if args.json else format_compare(c))
        return 0
    f = open_gguf(_resolve_model(args.model))
    s = summarize(f)
    print(to_json(s) if args.json else format_summary(s, show_tensors=not args.no_tensors))
    return 0


def _cmd_convert(args) -> int:
    from .convert import convert

    res = convert(args.hf_dir, outtype=args.outtype, out_prefix=args.output, assistant_dir=args.assistant,
                  threads=args.threads, progress=not args.quiet, name=args.name)
    for p in res.paths():
        print(p)
    return 0


def _cmd_run(args) -> int:
    from . import open_gguf
    from .inspect_gguf import format_summary, summarize

    path = _resolve_model(args.model)
    f = open_gguf(path)
    # Text generation lands with the text-inference issue; until then `run` loads and
    # validates the model and shows what it holds.
    print(format_summary(summarize(f), show_tensors=not args.no_tensors))
    print("\nmodel loaded and validated; text generation is not implemented yet in this version")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .convert.quant_policy import OUTTYPES

    p = argparse.ArgumentParser(prog="unigemma", description="Local inference runtime for Gemma 4 12B Unified")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("info", help="build and CPU facts (selected ISA path)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=_cmd_info)

    s = sub.add_parser("inspect", help="show a GGUF file: architecture, hyper-parameters, tensors, tokenizer")
    s.add_argument("model", nargs="?", help="GGUF file (default: the embedded Gemma 3 270M)")
    s.add_argument("--compare", nargs=2, metavar=("A", "B"), help="per-tensor max/mean difference of two files")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--no-tensors", action="store_true", help="omit the tensor table")
    s.set_defaults(fn=_cmd_inspect)

    s = sub.add_parser("convert", help="Hugging Face checkpoint -> GGUF (text model, mmproj, assistant)")
    s.add_argument("hf_dir")
    s.add_argument("--outtype", default="f16", choices=OUTTYPES)
    s.add_argument("--assistant", metavar="HF_ASSISTANT_DIR", help="also convert the MTP drafter")
    s.add_argument("-o", "--output", metavar="OUT_PREFIX", help="writes OUT_PREFIX.gguf, OUT_PREFIX-mmproj.gguf, "
                   "OUT_PREFIX-assistant.gguf (default: HF_DIR-OUTTYPE)")
    s.add_argument("-t", "--threads", type=int, default=0, help="quantization threads (0 = all cores)")
    s.add_argument("--name", help="general.name (default: the directory name)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(fn=_cmd_convert)

    s = sub.add_parser("run", help="run a model (default: the embedded Gemma 3 270M)")
    s.add_argument("model", nargs="?")
    s.add_argument("--no-tensors", action="store_true")
    s.set_defaults(fn=_cmd_run)

    from .bench_kernels import add_bench_parser

    add_bench_parser(sub)
    return p


def main(argv=None) -> int:
    from ._core import UnigemmaError

    args = build_parser().parse_args(argv)
    if getattr(args, "threads", 0) is not None and getattr(args, "threads", 0) < 0:
        print("unigemma: error: --threads must be >= 0", file=sys.stderr)
        return 2
    try:
        return args.fn(args)
    except UnigemmaError as e:
        print(f"unigemma: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
