"""A character-level tokenizer built locally (no download) with ``tokenizers``.

One token per character of printable ASCII plus newline, and special tokens
``<pad>``, ``<bos>``, ``<eos>``, ``<unk>``; wrapped in
``PreTrainedTokenizerFast`` so it saves/loads like any Hugging Face tokenizer.
Left padding, because generation appends on the right; ``tok(text)`` prepends
``<bos>``.

Example
-------
>>> tok = char_tokenizer()
>>> tok.decode(tok("12+7=19\\n#### 19")["input_ids"], skip_special_tokens=True)
'12+7=19\\n#### 19'
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIALS = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>"}
CHARS = "\n" + "".join(c for c in string.printable if c.isprintable())


def char_tokenizer() -> PreTrainedTokenizerFast:
    """Build the character-level tokenizer (vocabulary of 99 tokens).

    Examples
    --------
    >>> tok = char_tokenizer()
    >>> tok.convert_ids_to_tokens(tok("ab")["input_ids"])
    ['<bos>', 'a', 'b']
    """
    vocab = {tok: i for i, tok in enumerate(list(SPECIALS.values()) + list(CHARS))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIALS["unk_token"]))
    # Every character, newline included, is its own pre-token; Fuse joins them back without spaces.
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    # Prompts start with <bos> (added by ``tok(text)``), as a causal LM needs a first position to predict from.
    bos = SPECIALS["bos_token"]
    core.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])]
    )
    return PreTrainedTokenizerFast(tokenizer_object=core, padding_side="left", **SPECIALS)
