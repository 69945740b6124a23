#!/usr/bin/env python3
"""Thin wrapper: `python tools/convert_hf_to_gguf.py HF_DIR [options]` == `unigemma convert HF_DIR [options]`."""
import sys

from unigemma.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
