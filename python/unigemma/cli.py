"""The `unigemma` command line: info, inspect, convert, run, chat, bench, serve."""
from __future__ import annotations

import argparse
import json
import os
import sys


def _cmd_info(args) -> int:
    from . import __version__, build_info

    info = build_info()
    if info["webgpu"]:
        from . import webgpu

        try:
            info["webgpu_adapter"] = webgpu.open_device()
        except Exception as e:  # noqa: BLE001 - report, never fail `info`
            info["webgpu_adapter"] = {"error": str(e)}
    if args.json:
        print(json.dumps({"version": __version__, **info}, indent=1))
        return 0
    print(f"unigemma {__version__}")
    print(f"  CPU ISA path:   {info['selected_isa']} (available: {', '.join(info['available_isas'])})")
    feats = [k for k, v in info["cpu_features"].items() if v]
    print(f"  CPU features:   {', '.join(feats) or 'none detected'}")
    print(f"  threads:        {info['hardware_threads']}")
    print(f"  CUDA backend:   {'built' if info['cuda'] else 'not built'}")
    print(f"  WebGPU backend: {'built against wgpu ' + info['webgpu_headers'] if info['webgpu'] else 'not built'}")
    a = info.get("webgpu_adapter")
    if a and "error" in a:
        print(f"  GPU adapter:    none ({a['error']})")
    elif a:
        print(f"  GPU adapter:    {a['device']} ({a['adapter_type']}, {a['backend']}; {a['description']})")
        print(f"                  largest buffer {int(a['max_buffer_size']) >> 20} MiB, storage binding "
              f"{int(a['max_storage_buffer_binding_size']) >> 20} MiB, workgroup memory "
              f"{int(a['max_compute_workgroup_storage_size']) >> 10} KiB, f16 {a['shader_f16']}, "
              f"subgroups {a['subgroups']}, timestamps {a['timestamp_query']}")
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


DEFAULT_CHAT_PROMPT = "Write a short poem about the sea."
DEFAULT_TEXT_PROMPT = "Once upon a time, in a small village by the sea,"


def _load(args):
    from .model import Model

    return Model(_resolve_model(args.model), n_ctx=args.ctx_size, n_threads=args.threads, kv_type=args.kv,
                 act_precision=args.precision, verbose=getattr(args, "verbose", False), mmproj=args.mmproj,
                 image_tokens=args.image_tokens, draft=args.draft,
                 draft_tokens="auto" if args.draft_n == "auto" else int(args.draft_n), device=args.device)


def _media_args(args) -> list[tuple[str, str]]:
    """(kind, path) of --image/--audio/--video in command-line order."""
    return [(kind, path) for kind, path in getattr(args, "media", None) or []]


def _sampling(args):
    """The SamplingParams of the command line (-n -1: up to the end of the context)."""
    from .generation import SamplingParams

    return SamplingParams(max_tokens=None if args.n_predict < 0 else args.n_predict, temperature=args.temp,
                          top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
                          repetition_penalty=args.repeat_penalty, seed=args.seed)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _cmd_run(args) -> int:
    """Generate from -p (raw text, or one user turn with --chat); only the generated text goes
    to stdout, timings to stderr. Without -p: a built-in prompt (a chat turn for models with a
    chat template, a story opening for base models such as the embedded Gemma 3 270M)."""
    from .generate import format_timings

    media = _media_args(args)
    if media and not args.mmproj:
        print("unigemma: error: --image/--audio/--video need the projector: --mmproj FILE", file=sys.stderr)
        return 2
    m = _load(args)
    chat, prompt = args.chat or (bool(media) and m.has_chat_template), args.prompt
    if prompt is None:
        chat = m.has_chat_template
        prompt = DEFAULT_CHAT_PROMPT if chat else DEFAULT_TEXT_PROMPT
        if media:
            prompt = "Describe this." if len(media) == 1 else "Describe these."
        print(f"(no prompt given: using {prompt!r}{' as a chat turn' if chat else ''})", file=sys.stderr)
    params = _sampling(args)
    if chat:
        content = ([{"type": k, k: p} for k, p in media] + [{"type": "text", "text": prompt}]) if media else prompt
        stream = m.chat([{"role": "user", "content": content}], stream=True, params=params)
        for kind, value in stream:
            if kind == "content":
                _write(value)
            elif kind == "tool_call":
                _write(f"[tool call] {json.dumps(value, ensure_ascii=False)}\n")
    else:
        stream = m.generate(prompt, params, stream=True, media=media or None)
        for piece in stream:
            _write(piece)
    _write("\n")
    print(format_timings(stream.result.stats), file=sys.stderr)
    return 0


def _cmd_chat(args) -> int:
    """Interactive chat: one line per user turn; /exit or EOF ends, /reset clears the history;
    /image PATH, /audio PATH, /video PATH attach media to the next message (needs --mmproj);
    Ctrl-C during a reply stops it (the partial reply stays in the history)."""
    from ._core import UnigemmaError
    from .generate import format_timings

    m = _load(args)
    interactive = sys.stdin.isatty()
    base = [{"role": "system", "content": args.system}] if args.system else []
    messages = list(base)
    params = _sampling(args)
    attached: list[tuple[str, str]] = _media_args(args)
    if interactive:
        print("(type a message; /image, /audio, /video PATH attach media; /reset clears the conversation, "
              "/exit or Ctrl-D quits)", file=sys.stderr)
    while True:
        try:
            line = input("> ") if interactive else sys.stdin.readline()
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        if not interactive and not line:
            return 0  # EOF
        line = line.strip()
        if not line:
            continue
        if line in ("/exit", "/quit"):
            return 0
        if line == "/reset":
            messages = list(base)
            attached = []
            print("(conversation cleared)", file=sys.stderr)
            continue
        cmd, _, arg = line.partition(" ")
        if cmd in ("/image", "/audio", "/video"):
            kind, path = cmd[1:], arg.strip()
            if m.media is None:
                print("(no projector loaded: start with --mmproj FILE to attach media)", file=sys.stderr)
            elif not path or not os.path.isfile(path):
                print(f"(no such file: {path!r})", file=sys.stderr)
            else:
                attached.append((kind, path))
                print(f"({kind} attached: {path}; it goes with your next message)", file=sys.stderr)
            continue
        if attached:
            content = [{"type": k, k: p} for k, p in attached] + [{"type": "text", "text": line}]
            attached = []
        else:
            content = line
        messages.append({"role": "user", "content": content})
        parts, thinking, calls = [], [], []
        try:
            stream = m.chat(messages, thinking=args.thinking, stream=True, params=params)
        except UnigemmaError as e:  # a bad media file: say so, drop the turn, keep chatting
            print(f"(error: {e})", file=sys.stderr)
            messages.pop()
            continue
        try:
            for kind, value in stream:
                if kind == "content":
                    parts.append(value)
                    _write(value)
                elif kind == "thinking":
                    thinking.append(value)
                    sys.stderr.write(value)
                    sys.stderr.flush()
                elif kind == "tool_call":
                    calls.append(value)
                    _write(f"[tool call] {json.dumps(value, ensure_ascii=False)}")
        except KeyboardInterrupt:
            stream.close()
            _write("\n")
            print("(interrupted)", file=sys.stderr)
            messages.append({"role": "assistant", "content": "".join(parts)})
            continue
        _write("\n")
        messages.append(stream.result.message)
        print(format_timings(stream.result.stats), file=sys.stderr)


def _model_args(s, n_predict: int = 256) -> None:
    from .generation import SamplingParams
    from .model import KV_TYPES

    s.add_argument("model", nargs="?", help="GGUF file (default: the embedded Gemma 3 270M)")
    s.add_argument("-n", "--n-predict", type=int, default=n_predict,
                   help=f"tokens to generate at most (-1: until the end of the context; default {n_predict})")
    s.add_argument("-c", "--ctx-size", type=int, default=4096, help="context length in tokens (default 4096)")
    s.add_argument("-t", "--threads", type=int, default=0, help="compute threads (0 = all cores)")
    s.add_argument("--kv", default="f16", choices=KV_TYPES, help="KV cache type (default f16)")
    s.add_argument("--device", default="cpu", choices=("auto", "cpu", "gpu"),
                   help="cpu (default); auto: a hardware GPU through WebGPU when found, else the CPU; gpu: any "
                        "WebGPU adapter (a software one too), an error when there is none")
    s.add_argument("--precision", default="q8", choices=("q8", "q16"),
                   help="activation precision of quantized matmuls: q8 (fast, llama.cpp's) or q16 (near-float)")
    d = SamplingParams()  # the defaults are SamplingParams'
    s.add_argument("--temp", type=float, default=d.temperature, help="temperature (0 = greedy, the default)")
    s.add_argument("--seed", type=int, default=d.seed, help="sampling seed (default: random)")
    s.add_argument("--top-k", type=int, default=d.top_k, help="top-k (0 = off)")
    s.add_argument("--top-p", type=float, default=d.top_p, help="top-p (1 = off)")
    s.add_argument("--min-p", type=float, default=d.min_p, help="min-p (0 = off)")
    s.add_argument("--repeat-penalty", type=float, default=d.repetition_penalty, help="repetition penalty (1 = off)")
    s.add_argument("-v", "--verbose", action="store_true", help="log model and KV cache facts to stderr")
    s.add_argument("--mmproj", metavar="FILE", help="multimodal projector GGUF (ours or llama.cpp's) for media input")
    s.add_argument("--draft", metavar="FILE", help="MTP drafter GGUF (the assistant): speculative decoding, same output")
    s.add_argument("--draft-n", default="auto", choices=["auto"] + [str(i) for i in range(1, 9)],
                   help="tokens drafted per round (default auto: adapts to the acceptance rate)")
    s.add_argument("--image-tokens", type=int, default=280, choices=(70, 140, 280, 560, 1120),
                   help="soft tokens per image (default 280, as transformers)")
    for kind in ("image", "audio", "video"):
        s.add_argument(f"--{kind}", dest="media", action=_AppendMedia, metavar="PATH",
                       help=f"{kind} file for the prompt (repeatable; needs --mmproj)")


class _AppendMedia(argparse.Action):
    """--image/--audio/--video PATH append (kind, PATH) to one list, keeping their order."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, self.dest, None) or [])
        items.append((option_string.lstrip("-"), values))
        setattr(namespace, self.dest, items)


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

    s = sub.add_parser("run", help="generate text (default model: the embedded Gemma 3 270M)")
    _model_args(s)
    s.add_argument("-p", "--prompt", help="prompt text (default: a built-in prompt)")
    s.add_argument("--chat", action="store_true", help="send the prompt as a user turn in the chat format")
    s.set_defaults(fn=_cmd_run)

    s = sub.add_parser("chat", help="interactive chat with streaming replies")
    _model_args(s, n_predict=-1)
    s.add_argument("--system", help="system prompt")
    s.add_argument("--thinking", action="store_true", help="Gemma 4: enable the thinking channel (shown on stderr)")
    s.set_defaults(fn=_cmd_chat)

    from .bench_kernels import add_bench_parser
    from .server import add_serve_parser

    add_bench_parser(sub)
    add_serve_parser(sub)
    return p


def main(argv=None) -> int:
    from ._core import UnigemmaError

    args = build_parser().parse_args(argv)
    if getattr(args, "threads", 0) is not None and getattr(args, "threads", 0) < 0:
        print("unigemma: error: --threads must be >= 0", file=sys.stderr)
        return 2
    try:
        return args.fn(args)
    except (UnigemmaError, ValueError) as e:
        msg = str(e).strip().splitlines()
        print(f"unigemma: error: {msg[0] if msg else type(e).__name__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nunigemma: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
