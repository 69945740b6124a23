"""Deterministic tokenizer test corpus: hand-picked edge cases plus seeded random mixes of
words, scripts, emoji, code, whitespace runs and special-token texts. No network, no files.

    corpus(special_texts, n_random=2000, seed=0) -> list[str]
    plain_corpus(n_random=600, seed=1) -> list[str]   (no special texts, no U+2581: round-trips)
"""
from __future__ import annotations

import random

_WORDS = ("the of and to a in is that it was for on are as with his they at be this from have or by one had "
          "not but what all were when we there can an your which their said if do will each about how up out "
          "them then she many some so these would other into has more her two like him see time could no make "
          "than first been its who now people my made over did down only way find use may water long little "
          "weather Paris London Gemma model token image audio question answer function value string number "
          "object response thinking Hello The This In It We You HTTP JSON API tokenizer").split()
_ACCENTED = ["café", "naïve", "résumé", "façade", "jalapeño", "Zürich", "straße", "Ærøskøbing", "crème brûlée",
             "São Paulo", "Kraków", "İstanbul", "ğüşöçı", "Ελληνικά", "русский язык", "українська", "Việt Nam",
             "cafe\u0301", "n\u0303", "Å", "\u00c5", "A\u030a", "ǅ", "ﬁ", "Ｆｕｌｌｗｉｄｔｈ"]
_CJK = ["日本語", "中文字符", "汉字", "漢字", "한국어", "こんにちは世界", "カタカナ", "東京タワー", "你好，世界！", "「引用」",
        "〇一二三", "㐀㐁", "𠀀𠀁𪚥", "ひらがな", "ｶﾀｶﾅ"]
_OTHER_SCRIPTS = ["مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "ሰላም", "Բարեւ", "გამარჯობა",
                  "ᚠᛇᚻ", "𐌰𐌱𐌲", "ꦲꦏ꧀ꦱꦫ", "ᐊᐃᔭᐅᓯᒪᔪᖅ", "ܐܪܡܝܐ"]
_EMOJI = ["😀", "🤗", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🇯🇵", "❤️", "✨", "🚀", "🧑🏿‍💻", "⌚", "©", "™", "🀄", "🫠",
          "\U0001FAE8", "1️⃣"]
_CODE = ["def f(x):\n    return x + 1\n", "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}", "#include <stdio.h>",
         '{"key": [1, 2.5, null, true], "s": "a\\nb"}', "<div class=\"x\">&amp;</div>", "SELECT * FROM t WHERE id=1;",
         "x = y ** 2 // 3 % 4", "if a != b && c || !d:", "lambda: None", "$ ls -la ~/ | grep '\\.py$'",
         "https://example.com/a?b=c&d=e#f", "user@example.org", "C:\\Windows\\System32", "0x1F 0b1010 1e-9 3.14159",
         "a_b-c.d/e", "```python\nprint('hi')\n```", "    indented\n\tand tabbed", "// comment\n/* block */",
         "fn main() -> Result<(), Box<dyn Error>> {}", "std::vector<int32_t> v{1, 2, 3};"]
_PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["...", "—", "–", "’", "“", "”", "«", "»", "¿", "¡", "•", "…",
                                                       "§", "¶", "†", "€", "£", "¥", "°", "±", "×", "÷", "≤", "≠", "∑"]
_WS = [" ", "  ", "   ", "    ", "        ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", " \n", "\n ", " \n\n ",
       "\n\t", "\u00a0", "\u3000", "\u2009", "\v", "\f", "\r"]
_NUMBERS = ["0", "7", "42", "1234567890", "3.5", "-12", "1,000,000", "2024-05-01", "12:30", "½", "²", "٣", "五"]


def _random_codepoint(rng: random.Random) -> str:
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F),
              (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x2BFF), (0x3040, 0x30FF), (0x4E00, 0x9FFF),
              (0xAC00, 0xD7A3), (0xE000, 0xF8FF), (0xF900, 0xFFFD), (0x10000, 0x1FAFF), (0x20000, 0x2FA1F),
              (0xE0000, 0xE007F), (0x1, 0x1F)]
    lo, hi = rng.choice(ranges)
    return chr(rng.randint(lo, hi))


def _hand_picked(special_texts: list[str]) -> list[str]:
    out = ["", " ", "  ", "\n", "\t", "a", "A", "Hello", " Hello", "Hello ", "  Hello  world  ", "Hello\nworld",
           "Hello world", "the weather in Paris", "hello\n\nworld\n\n\nagain", "x" * 300, "ab" * 200, " " * 50,
           "\n" * 40, "\n" * 33 + "x" + "\n" * 31, "\t" * 20, " \t \t ", "\r\n\r\n", "a\u2581b", "\u2581",
           "\u2581\u2581 \u2581", "\u0120x \u0120", "Ġhello", "\u0000", "a\u0000b", "\x7f\x01\x1b[0m",
           "\ufffd", "\ufeffBOM", "\u200b\u200c\u200d", "\U0010FFFD", "\U000E0041", "\ue000", "Ǆǅǆ",
           "I'm can't won't y'all", "ALL CAPS SHOUT", "MiXeD cAsE", "123 456 7890", "3.14159265358979",
           "<", ">", "<|", "|>", "<<>>", "<>", "< bos >", "<bos", "bos>", "<|turn", "turn|>", "<|\"", "[multimodal",
           "<unused", "<unused0", "<0x41>", "<0xZZ>", "<pad><pad>", "   leading spaces", "trailing spaces   ",
           "tabs\tin\tthe\tmiddle", "line1\nline2\r\nline3\rline4", "\n\nlead newlines", "trail newlines\n\n\n"]
    out += _ACCENTED + _CJK + _OTHER_SCRIPTS + _EMOJI + _CODE + _NUMBERS
    for s in special_texts:
        out += [s, s + s, " " + s, s + " ", "\n" + s + "\n", "x" + s + "y", s + "\n\n" + s, s[:-1], s[1:],
                "<" + s, s + ">", s + "Hello world" + s]
    if len(special_texts) >= 2:
        a, b = special_texts[0], special_texts[1]
        out += [a + b, a[:-1] + b, a + b[1:], "<|turn>user\nHello<turn|>\n<|turn>model\n",
                "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n"]
    return out


def _random_mix(rng: random.Random, special_texts: list[str], allow_special: bool, allow_space_symbol: bool) -> str:
    pools = [(_WORDS, 30), (_ACCENTED, 6), (_CJK, 6), (_OTHER_SCRIPTS, 4), (_EMOJI, 5), (_CODE, 3), (_PUNCT, 10),
             (_WS, 14), (_NUMBERS, 4)]
    if allow_special and special_texts:
        pools.append((special_texts, 3))
    weights = [w for _, w in pools]
    parts = []
    for _ in range(rng.randint(1, 25)):
        r = rng.random()
        if r < 0.05:
            parts.append("".join(_random_codepoint(rng) for _ in range(rng.randint(1, 6))))
        elif r < 0.08:
            parts.append(rng.choice([" ", "\n", "\t", "a", "é", "の"]) * rng.randint(2, 40))
        else:
            pool = rng.choices(pools, weights)[0][0]
            parts.append(rng.choice(pool))
        if rng.random() < 0.6:
            parts.append(" ")
    s = "".join(parts)
    if allow_space_symbol and rng.random() < 0.02:
        s += "\u2581"
    return s


def corpus(special_texts: list[str], n_random: int = 2000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = _hand_picked(special_texts)
    out += [_random_mix(rng, special_texts, True, True) for _ in range(n_random)]
    return out


def plain_corpus(n_random: int = 600, seed: int = 1) -> list[str]:
    """Valid text with no special-token texts and no U+2581 (which decodes to a space): these
    must survive decode(encode(s)) unchanged."""
    rng = random.Random(seed)
    hand = [s for s in _hand_picked([]) if "\u2581" not in s and "<" not in s and "[" not in s]
    return hand + [_random_mix(rng, [], False, False) for _ in range(n_random)]
