"""A tiny, randomly initialised Gemma-3 vision-language model folder, for CPU runs and tests of the fine-tuning path.

`python -m services.train tiny-gemma out=checkpoints/gemma3-tiny-random` writes a real
`Gemma3ForConditionalGeneration` (SigLIP vision tower + Gemma-3 text decoder, the architecture of
unsloth/gemma-3-4b-it at a few thousandths of its width) with a `Gemma3Processor`: a byte-level BPE tokenizer
that has Gemma's chat and image tokens, a Gemma-style chat template and a 32x32 image processor. Nothing is
downloaded; the weights are random (seeded), so what it generates is noise — it exists to exercise the code.
"""
from __future__ import annotations

from pathlib import Path

from services.train.finetune.config import TinyGemmaConfig

SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>",
           "<start_of_image>", "<end_of_image>", "<image_soft_token>"]
# Gemma's turn format (written for this project): user/model turns, the image marker where an image item is.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<start_of_image>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
# Text the BPE merges are learned from; any other text still encodes (byte-level alphabet).
CORPUS = [
    "Caption: a shape on a plain background. Q: what color is the shape? A: red",
    "Q: what shape is it? A: circle Q: is it a triangle? A: no Q: is there a rectangle? A: yes",
    "<reminder> [turn 1] Q: what color is the shape? A: blue [turn 2] (picture 2) Q: what shape? A: square </reminder>",
    "First recall the earlier turns that matter, then answer the last question about the picture in a short phrase.",
    "green yellow gray black brown teal orange purple white circle rectangle triangle picture",
]
IMAGE_SIZE, PATCH, MM_TOKENS = 32, 8, 4  # 4x4 patches pooled to 2x2 = 4 image tokens
# Width 64: bitsandbytes' 4-bit CPU kernels need in_features to be a multiple of its block size (64).


def build_tokenizer(vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        extra_special_tokens={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                              "image_token": "<image_soft_token>"})


def build_processor(image_size: int = IMAGE_SIZE, image_tokens: int = MM_TOKENS):
    from transformers import Gemma3ImageProcessor, Gemma3Processor

    image_processor = Gemma3ImageProcessor(size={"height": image_size, "width": image_size})
    return Gemma3Processor(image_processor=image_processor, tokenizer=build_tokenizer(),
                           chat_template=CHAT_TEMPLATE, image_seq_length=image_tokens)


def tiny_config(tokenizer, hidden: int = 64, layers: int = 2):
    """Gemma3Config of the given width/depth; heads of 32..128 dims, as the attention kernels expect."""
    from transformers import Gemma3Config, Gemma3TextConfig, SiglipVisionConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}
    heads = max(2, hidden // 128)
    text = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=max(1, heads // 2), head_dim=hidden // heads,
        query_pre_attn_scalar=hidden // heads, sliding_window=128, max_position_embeddings=1024,
        pad_token_id=ids["<pad>"], eos_token_id=ids["<eos>"], bos_token_id=ids["<bos>"])
    vision = SiglipVisionConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=max(1, layers // 2),
                                num_attention_heads=heads, image_size=IMAGE_SIZE, patch_size=PATCH)
    return Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=MM_TOKENS,
                        boi_token_index=ids["<start_of_image>"], eoi_token_index=ids["<end_of_image>"],
                        image_token_index=ids["<image_soft_token>"])


# unsloth/gemma-3-4b-it's architecture (its config.json): what bench/gpu_check.py trains with random weights
GEMMA3_4B_TEXT = dict(vocab_size=262208, hidden_size=2560, intermediate_size=10240, num_hidden_layers=34,
                      num_attention_heads=8, num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256,
                      sliding_window=1024, max_position_embeddings=131072)
GEMMA3_4B_VISION = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                        image_size=896, patch_size=14, vision_use_head=False)
GEMMA3_4B_IMAGE_TOKENS = 256


def gemma3_4b_config(tokenizer):
    """Gemma3Config of the real 4B model (34 + 27 layers, 896 px, 256 image tokens) around the tiny tokenizer: its
    ids are a prefix of the full 262208-entry vocabulary, so the embedding and the head keep their real size."""
    from transformers import Gemma3Config, Gemma3TextConfig, SiglipVisionConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}
    text = Gemma3TextConfig(**GEMMA3_4B_TEXT, pad_token_id=ids["<pad>"], eos_token_id=ids["<eos>"],
                            bos_token_id=ids["<bos>"])
    return Gemma3Config(text_config=text, vision_config=SiglipVisionConfig(**GEMMA3_4B_VISION),
                        mm_tokens_per_image=GEMMA3_4B_IMAGE_TOKENS, boi_token_index=ids["<start_of_image>"],
                        eoi_token_index=ids["<end_of_image>"], image_token_index=ids["<image_soft_token>"])


def build_gemma3_4b(out: str | Path, seed: int = 0, device: str = "cuda") -> Path:
    """Write a random-weight Gemma-3-4B (bf16, ~8.6 GB) + a 896-px processor to `out`; initialised on `device`."""
    import torch

    processor = build_processor(GEMMA3_4B_VISION["image_size"], GEMMA3_4B_IMAGE_TOKENS)
    return _save(gemma3_4b_config(processor.tokenizer), processor, out, seed, torch.device(device), torch.bfloat16)


def build_tiny_gemma3(out: str | Path, seed: int = 0, hidden: int = 64, layers: int = 2) -> Path:
    """Write model + processor to `out` (any existing files there are overwritten); returns the folder."""
    import torch

    processor = build_processor()
    return _save(tiny_config(processor.tokenizer, hidden, layers), processor, out, seed, torch.device("cpu"),
                 torch.float32)


def _save(config, processor, out: str | Path, seed: int, device, dtype) -> Path:
    import torch
    from transformers import Gemma3ForConditionalGeneration

    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in its saved dtype: no float32 copy of a large model
    try:
        with device:
            model = Gemma3ForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(default)
    # transformers initialises the image-to-text projection to zeros: image features would all be 0 and the vision
    # tower (and its adapters) would get no gradient. A trained model's projection is not zero; a random one neither.
    projection = model.model.multi_modal_projector.mm_input_projection_weight
    with torch.no_grad():
        projection.normal_(0, projection.shape[0] ** -0.5)
    # Generation ends at end-of-turn, as with the real instruction-tuned model.
    model.generation_config.eos_token_id = [config.text_config.eos_token_id,
                                            processor.tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build(cfg: TinyGemmaConfig) -> None:
    print(build_tiny_gemma3(cfg.out, cfg.seed, cfg.hidden, cfg.layers))
