"""``unigemma serve``: an OpenAI-compatible HTTP server (see app.py and engine.py)."""
from __future__ import annotations

import ipaddress
import os
import sys

__all__ = ["build_server", "serve_main", "add_serve_parser"]


def build_server(model_path=None, mmproj=None, draft=None, n_ctx: int = 4096, parallel: int = 4,
                 threads: int = 0, kv: str = "f16", api_key: str | None = None, max_queue: int = 64,
                 queue_timeout: float = 120.0, max_body_bytes: int = 32 << 20, allow_files: bool = True,
                 model_name: str | None = None, reserve_kv: bool = True, verbose: bool = False,
                 device: str = "cpu"):
    """Loads the model and returns (ServerState, Starlette app). ``n_ctx`` is per slot."""
    from ..model import Model
    from .app import ServerState, create_app
    from .engine import Engine

    model = Model(model_path, n_ctx=n_ctx, n_threads=threads, kv_type=kv, mmproj=mmproj, draft=draft,
                  verbose=verbose, device=device)
    engine = Engine(model, n_parallel=parallel, n_ctx=n_ctx, max_queue=max_queue, queue_timeout=queue_timeout,
                    reserve_kv=reserve_kv)
    name = model_name or os.path.splitext(os.path.basename(model.path))[0]
    st = ServerState(model, engine, name, api_key=api_key, max_body_bytes=max_body_bytes, allow_files=allow_files)
    return st, create_app(st)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_main(args) -> int:
    import uvicorn

    if args.parallel < 1:
        raise ValueError("--parallel must be >= 1")
    if not 0 < args.port < 65536:
        raise ValueError("--port must be in 1..65535")
    api_key = args.api_key or os.environ.get("UNIGEMMA_API_KEY") or None
    if not _is_loopback(args.host) and api_key is None:
        print(f"unigemma: warning: serving on {args.host} without an API key (--api-key)", file=sys.stderr)
    st, app = build_server(args.model, mmproj=args.mmproj, draft=args.draft, n_ctx=args.ctx_size,
                           parallel=args.parallel, threads=args.threads, kv=args.kv, api_key=api_key,
                           max_queue=args.queue, queue_timeout=args.queue_timeout,
                           max_body_bytes=args.max_body_mb << 20,
                           allow_files=not args.no_local_files, model_name=args.alias, verbose=args.verbose,
                           device=args.device)
    print(f"unigemma: serving {st.model_name} on http://{args.host}:{args.port}/v1 "
          f"({args.parallel} slots x {args.ctx_size} tokens, {st.model.backend})", file=sys.stderr, flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning" if not args.verbose else "info",
                    timeout_graceful_shutdown=5)
    finally:
        st.engine.close()
    return 0


def add_serve_parser(sub) -> None:
    from ..model import KV_TYPES

    s = sub.add_parser("serve", help="OpenAI-compatible HTTP server (chat, completions, streaming, tools, media)")
    s.add_argument("model", nargs="?", help="GGUF file (default: the embedded Gemma 3 270M)")
    s.add_argument("--mmproj", metavar="FILE", help="multimodal projector GGUF: images and audio in messages")
    s.add_argument("--draft", metavar="FILE", help="MTP drafter GGUF: speculative decoding while one request is generating (same output)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("-c", "--ctx-size", type=int, default=4096, help="context per slot in tokens (default 4096)")
    s.add_argument("-np", "--parallel", type=int, default=4, help="parallel slots, batched together (default 4)")
    s.add_argument("-t", "--threads", type=int, default=0, help="compute threads (0 = all cores)")
    s.add_argument("--kv", default="f16", choices=KV_TYPES, help="KV cache type (default f16)")
    s.add_argument("--device", default="cpu", choices=("auto", "cpu", "gpu"),
                   help="cpu (default); auto: a hardware GPU through WebGPU when found, else the CPU; gpu: any "
                        "WebGPU adapter (a software one too)")
    s.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (also $UNIGEMMA_API_KEY)")
    s.add_argument("--queue", type=int, default=64, help="requests waiting for a slot before 429 (default 64)")
    s.add_argument("--queue-timeout", type=float, default=120.0,
                   help="seconds a request may wait for a slot before 503 (default 120)")
    s.add_argument("--max-body-mb", type=int, default=32, help="largest request body in MiB (default 32)")
    s.add_argument("--no-local-files", action="store_true", help="refuse image_url local file paths")
    s.add_argument("--alias", help="model id reported by /v1/models (default: the file name)")
    s.add_argument("-v", "--verbose", action="store_true")
    s.set_defaults(fn=serve_main)
