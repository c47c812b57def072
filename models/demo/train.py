"""Trains the demo VLM from scratch on generated shape scenes and converts it to the GGUF that ships
in the package (pyakvq/data/demo-vlm.gguf).

    python models/demo/train.py --out /tmp/demo            # ~28 minutes on 2 cores
    python models/demo/train.py --out /tmp/demo --steps 200 --no-convert   # a quick trial

Needs torch, transformers (5.x), tokenizers and pillow (only here: the package does not). Seeded:
the data of stage-2 step i comes from random.Random(seed * 1_000_003 + i), of stage-1 step i from
seed * 1_000_003 + 500_000 + i (data_seeds), the quick evaluations from 10_000 + step and 99_999; with the same
thread count a rerun trains the same model. The benchmark's test set (bench/vlm_quality.py) uses a
seed none of these reach.

The model is LLaVA-1.5's architecture, small:
  vision  CLIP ViT, 96 x 96 input (LLaVA-1.5's pad-to-square, then bicubic resize), patch 12 -> 8 x 8
          = 64 patches + CLS, width 128, 3 layers, 4 heads, quick_gelu; features of the last layer
          with CLS (strategy "full") -> 65 rows per image
  project Linear(128 -> 256) -> GELU -> Linear(256 -> 256)
  text    Llama, width 256, 4 layers, 4 query heads / 2 KV heads (GQA) of 64, SwiGLU 704, RoPE
          theta 1e6 (as Qwen2's; see below), 2048 positions, untied output
  vocab   byte-level BPE (GPT-2 pre-tokenizer, no BOS) trained on the task's texts, plus </s>,
          <pad>, <image>
The chat format is LLaVA-1.5's vicuna ("{system} USER: <image>\\n{question} ASSISTANT: {answer}</s>");
with several images each is followed by its number, as a caption under a figure:
"<image>\\nImage 1.\\n<image>\\nImage 2.\\n...".

Training, two stages:
  1. the vision tower alone (--vision-steps batches of 64 scenes) with an auxiliary head (AuxHead:
     colour, shape and position from every patch feature and from the CLS feature), so that every
     row of an image carries what it shows;
  2. the projector and the decoder, the vision tower frozen (as LLaVA-1.5 freezes CLIP), on
     conversations of 3 questions about one image (colour, shape, and a description, position or
     either again; descriptions make the model read every attribute) or of up to 4-10 questions
     about distinct images of a prompt of 2..16 numbered images, whose answers name the image first
     ("Image 5: red."); no image is asked about twice, so no answer can be copied from an earlier
     one. Single images only for the first 10% of the steps, then one step in four; the
     multi-image steps draw at most 4 images at first, up to 16 from half-way (finding image k
     among a few images is learned first, then carried to many).
     Two auxiliary losses teach the lookup "image k" needs (both discarded, the model stays plain
     LLaVA): NumberProbe makes the hidden state after decoder layer 2 at each image's number token
     (" k" of "Image k.") classify image k's colour, shape and position, so the content of image k
     sits on the token that names it; ReadGuide, at the ":" of "Image k:" in the answer, pulls one
     attention head of the last layer onto that number token and makes the layer's input there
     classify k (the query must hold the number it looks for). Without them the decoder answered
     about some image of the prompt, not image k (8 images: 17-46% right); without the
     classification of k a full run stayed at 25-38%. RoPE theta 1e6 instead of 10000: with 64-dim
     heads, theta 10000 leaves only ~5 of 32 frequency pairs that turn by less than half a radian
     over a 1000-token prompt, too few for a lookup by content at any distance; trials learned the
     lookup only with 1e6.
AdamW, warmup then cosine decay, gradient clipping 1.0.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import random
import shutil
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import shapes  # noqa: E402

IMAGE_SIZE = 96
PATCH = 12
ROWS_PER_IMAGE = (IMAGE_SIZE // PATCH) ** 2 + 1  # strategy "full": CLS + 64 patches
STEPS, VISION_STEPS = 2400, 1000  # the defaults of stages 2 and 1 (they make the shipped model)
ROPE_THETA = 1_000_000.0
PROBE_LAYER, PROBE_WEIGHT = 2, 0.5  # NumberProbe: after decoder layer 2 of 4; its weight in the stage-2 loss
GUIDE_LAYER, GUIDE_HEAD, GUIDE_WEIGHT = 3, 0, 0.5  # ReadGuide: query head 0 of the last decoder layer
N_ATTRIBUTES = len(shapes.COLORS) + len(shapes.SHAPES) + len(shapes.POSITIONS)  # classes of attribute_loss


def _load_by_path(name: str, path: pathlib.Path):
    """A module of the package loaded from its file (importing pyakvq itself needs the compiled
    extension, which the training environment lacks)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SYSTEM = _load_by_path("akvq_multimodal", ROOT / "pyakvq" / "multimodal.py").LLAVA_SYSTEM  # LLaVA-1.5's

# LLaVA-1.5's vicuna format; with several images each is followed by its number ("<image>\nImage k.\n"):
# the number's tokens come right after the image's rows, where one attention step can gather what
# they show; one image gets no number.
#: what CHAT_TEMPLATE puts after each image marker's line in a multi-image turn ("{k}": its number)
IMAGE_LABEL = "Image {k}.\n"
CHAT_TEMPLATE = (
    "{%- set ns = namespace(n=0) -%}"
    "{%- for message in messages -%}{%- if message['content'] is not string -%}"
    "{%- for part in message['content'] -%}{%- if part['type'] == 'image' -%}{%- set ns.n = ns.n + 1 -%}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}{%- endfor -%}"
    "{%- set ns2 = namespace(k=0) -%}"
    "{%- if messages and messages[0]['role'] != 'system' -%}{{ '" + SYSTEM.replace("'", "\\'") + " ' }}{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}{%- set parts = [{'type': 'text', 'text': message['content']}] -%}"
    "{%- else -%}{%- set parts = message['content'] -%}{%- endif -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- for part in parts if part['type'] == 'text' -%}{{ part['text'] }}{%- endfor -%}{{ ' ' }}"
    "{%- else -%}{{ message['role'] | upper }}{{ ': ' }}"
    "{%- for part in parts if part['type'] == 'image' -%}{%- set ns2.k = ns2.k + 1 -%}"
    "{{ '<image>\n' }}{%- if ns.n > 1 -%}{{ 'Image ' ~ ns2.k ~ '.\n' }}{%- endif -%}{%- endfor -%}"
    "{%- for part in parts if part['type'] == 'text' -%}{{ part['text'] }}{%- endfor -%}"
    "{%- if message['role'] == 'assistant' -%}{{ eos_token }}{%- else -%}{{ ' ' }}{%- endif -%}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
)


def corpus_lines(n: int = 3000) -> list[str]:
    """Texts the BPE vocabulary is trained on: every question, answer and prompt frame."""
    rng = random.Random(7)
    lines = [SYSTEM, "USER: ASSISTANT:"]
    lines += [f"Image {k}.\n" for k in range(1, shapes.MAX_IMAGES + 1)]
    lines += [f"Image {k}: " for k in range(1, shapes.MAX_IMAGES + 1)]
    for q in shapes.COLOR_QUESTIONS + shapes.SHAPE_QUESTIONS + shapes.POSITION_QUESTIONS + shapes.DESCRIBE_QUESTIONS:
        lines.append(q)
    for k in range(1, shapes.MAX_IMAGES + 1):
        lines += [shapes.color_question_multi(k), shapes.shape_question_multi(k), shapes.describe_question_multi(k)]
    for _ in range(n):
        _, s = shapes.draw_scene(rng)
        lines += [shapes.describe_answer(s), shapes.color_answer(s), shapes.shape_answer(s), shapes.position_answer(s)]
    return lines


def make_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    t.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    t.train_from_iterator(corpus_lines(), trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=t, eos_token="</s>", pad_token="<pad>", bos_token=None,
                                  unk_token=None)
    tok.add_tokens(["<image>"], special_tokens=True)
    tok.image_token = "<image>"
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build(tok):
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    n_vocab = (len(tok) + 63) // 64 * 64
    image_token = tok.convert_tokens_to_ids("<image>")
    vc = CLIPVisionConfig(hidden_size=128, intermediate_size=512, num_hidden_layers=3, num_attention_heads=4,
                          image_size=IMAGE_SIZE, patch_size=PATCH, projection_dim=64, hidden_act="quick_gelu",
                          layer_norm_eps=1e-5)
    tc = LlamaConfig(vocab_size=n_vocab, hidden_size=256, intermediate_size=704, num_hidden_layers=4,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, rms_norm_eps=1e-5,
                     rope_theta=ROPE_THETA, tie_word_embeddings=False, bos_token_id=None,
                     eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    cfg = LlavaConfig(vision_config=vc, text_config=tc, image_token_index=image_token, vision_feature_layer=-1,
                      vision_feature_select_strategy="full", projector_hidden_act="gelu",
                      tie_word_embeddings=False, image_seq_length=ROWS_PER_IMAGE)
    for c in (cfg, cfg.text_config, cfg.vision_config):
        c._attn_implementation = "sdpa"
    model = LlavaForConditionalGeneration(cfg)
    ip = LlavaImageProcessorPil(do_pad=True, size={"shortest_edge": IMAGE_SIZE},
                                crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, resample=3)
    proc = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=PATCH, vision_feature_select_strategy="full",
                          chat_template=CHAT_TEMPLATE, image_token="<image>", num_additional_image_tokens=1)
    return model, proc, torch


def sample(rng: random.Random, n_images: int):
    """(turns, [(image, scene)]) of one training conversation: the images come with the first
    question; 3 questions about one image, min(n, 4..10) about several (each image at most once),
    each a (question, answer). Every answer is trained on, so one encoding of the images teaches
    several answers."""
    drawn = [shapes.draw_scene(rng) for _ in range(n_images)]
    scenes = [s for _, s in drawn]
    if n_images == 1:
        s = scenes[0]
        qa = [(rng.choice(shapes.COLOR_QUESTIONS), shapes.color_answer(s)),
              (rng.choice(shapes.SHAPE_QUESTIONS), shapes.shape_answer(s)),
              shapes.single_qa(rng, s)]
        rng.shuffle(qa)
    else:
        # each image asked about at most once: a second question about image k could be answered
        # by copying the earlier answer's text instead of looking at the image
        ks = rng.sample(range(n_images), min(n_images, rng.randint(4, 10)))
        qa = [shapes.multi_qa(rng, scenes, k) for k in ks]
    return qa, drawn


class Encoder:
    """Examples -> padded tensors (input_ids, attention_mask, labels, pixel_values) and the
    auxiliary losses' positions (numbers, reads)."""

    def __init__(self, proc, torch):
        self.proc, self.torch = proc, torch
        self.tok = proc.tokenizer
        self.image_token = self.tok.convert_tokens_to_ids("<image>")
        self.eos = self.tok.eos_token_id
        self.pad = self.tok.pad_token_id

    def _ids(self, text: str) -> list[int]:
        out = []
        for t in self.tok(text, add_special_tokens=False)["input_ids"]:
            # each marker becomes the image's rows, as the processor and the engine do
            out.extend([t] * ROWS_PER_IMAGE if t == self.image_token else [t])
        return out

    def prompt_ids(self, messages) -> list[int]:
        return self._ids(self.proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))

    def label_positions(self, ids: list[int], n_images: int) -> list[int]:
        """Position of each image's number token (" k" of "<image>\nImage k.\n", image k in
        order) in ids; [] for a single image, which gets no number."""
        if n_images < 2:
            return []
        out, p = [], 0
        for k in range(1, n_images + 1):
            p = ids.index(self.image_token, p)
            while ids[p] == self.image_token:
                p += 1
            want = self.tok(f"\nImage {k}", add_special_tokens=False)["input_ids"]
            if ids[p: p + len(want)] != want:
                raise ValueError("the chat template does not number the images")
            p += len(want) - 1
            out.append(p)
        return out

    def conversation(self, qa, n_images: int) -> tuple[list[int], list[int], list[tuple[int, int]]]:
        """(ids, labels, reads) of a conversation rendered turn by turn with the chat template;
        labels are -100 except on the answers and their </s>; reads holds (position, image from 0)
        of the ":" of each answer about one of several images ("Image k:| red."), the token the
        answer's content is predicted from."""
        msgs, ids, labels, reads, prev = [], [], [], [], ""
        for i, (q, a) in enumerate(qa):
            content = [{"type": "image"} for _ in range(n_images if i == 0 else 0)] + [{"type": "text", "text": q}]
            msgs.append({"role": "user", "content": content})
            text = self.proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            assert text.startswith(prev), "the chat template is not prefix-stable"
            p = self._ids(text[len(prev):])
            ans = self.tok(" " + a, add_special_tokens=False)["input_ids"] + [self.eos]
            if n_images > 1:
                head = a[: a.index(":") + 1]  # "Image k:"
                k = int(head[len("Image "):-1]) - 1
                head_ids = self.tok(" " + head, add_special_tokens=False)["input_ids"]
                read = len(head_ids) - 1
                if ans[: read + 1] != head_ids:
                    raise ValueError(f"the answer {a!r} does not tokenize as {head!r} + its content")
                reads.append((len(ids) + len(p) + read, k))
            ids += p + ans
            labels += [-100] * len(p) + ans
            msgs.append({"role": "assistant", "content": a})
            prev = text + " " + a + self.tok.eos_token
        return ids, labels, reads

    def batch(self, examples):
        """(input_ids, attention_mask, labels, pixel_values, numbers, reads): numbers holds
        (conversation, position, image) of every image number token (label_positions), reads
        (conversation, position, position of the image's number token, image) of every answer's
        ":" about one of several images (conversation)."""
        torch = self.torch
        seqs, labs, pix, numbers, reads = [], [], [], [], []
        for b, (qa, images) in enumerate(examples):
            ids, labels, rd = self.conversation(qa, len(images))
            at = self.label_positions(ids, len(images))
            numbers += [(b, p, k) for k, p in enumerate(at)]
            reads += [(b, p, at[k], k) for p, k in rd]
            seqs.append(ids)
            labs.append(labels)
            pix.extend(images)
        n = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), n), self.pad, dtype=torch.long)
        lab = torch.full((len(seqs), n), -100, dtype=torch.long)
        att = torch.zeros((len(seqs), n), dtype=torch.long)
        for i, (s, lb) in enumerate(zip(seqs, labs, strict=True)):
            ids[i, : len(s)] = torch.tensor(s)
            lab[i, : len(lb)] = torch.tensor(lb)
            att[i, : len(s)] = 1
        pv = self.proc.image_processor(pix, return_tensors="pt")["pixel_values"]
        return ids, att, lab, pv, numbers, reads


class AuxHead:
    """The vision tower's training signal of its own (stage 1): on the layer the projector reads,
    one linear layer on every patch feature (the loss averaged over the patches) and one on the CLS
    feature each classify colour (6), shape (3) and position (5). Every row of an image then
    carries what the image shows, so the decoder can read it from whichever rows its attention
    lands on, e.g. the last rows, next to the image's "Image k." label. Discarded after training."""

    def __init__(self, torch, width: int):
        self.torch = torch
        self.patch = torch.nn.Linear(width, N_ATTRIBUTES)
        self.cls = torch.nn.Linear(width, N_ATTRIBUTES)

    def parameters(self) -> list:
        return list(self.patch.parameters()) + list(self.cls.parameters())

    def loss(self, model, pixel_values, scenes) -> tuple:
        """(loss, [colour, shape, position accuracy of the CLS classifier])"""
        torch = self.torch
        feats = model.model.vision_tower(pixel_values=pixel_values, output_hidden_states=True).hidden_states[-1]
        targets = scene_targets(torch, scenes)
        n_patch = feats.shape[1] - 1
        per_patch = self.patch(feats[:, 1:]).flatten(0, 1)  # [n * 64, 14]
        lp, _ = attribute_loss(torch, per_patch, targets.repeat_interleave(n_patch, dim=0))
        lc, acc = attribute_loss(torch, self.cls(feats[:, 0]), targets)  # [n, 14]
        return lp + lc, acc


class NumberProbe:
    """Stage 2's auxiliary signal: one linear layer on the decoder's hidden state after layer
    PROBE_LAYER at each image's number token (" k" of "<image>\nImage k.\n") classifies image k's
    colour, shape and position. The number token is then where image k's content sits, so a
    question about image k needs one lookup by the number's token, not a search by position among
    identical-looking image rows (which the decoder alone did not learn: 8-image answers stayed
    near chance). Discarded after training, like AuxHead."""

    def __init__(self, torch, width: int):
        self.torch = torch
        self.head = torch.nn.Linear(width, N_ATTRIBUTES)

    def parameters(self) -> list:
        return list(self.head.parameters())

    def loss(self, hidden, numbers, scenes_of) -> tuple:
        """(loss, [colour, shape, position accuracy]) over numbers [(conversation, position,
        image)]; hidden [batch, tokens, width]; scenes_of[conversation][image] the scene. None
        when the batch has no numbered image."""
        if not numbers:
            return None
        torch = self.torch
        b = torch.tensor([n[0] for n in numbers])
        p = torch.tensor([n[1] for n in numbers])
        targets = scene_targets(torch, [scenes_of[i][k] for i, _, k in numbers])
        return attribute_loss(torch, self.head(hidden[b, p]), targets)


class ReadGuide:
    """Stage 2's second auxiliary signal, at each multi-image answer's ":" ("Image k:| red."), where
    the answer's content is predicted: (1) the attention of query head GUIDE_HEAD of decoder layer
    GUIDE_LAYER is pulled to image k's number token, where NumberProbe puts image k's content (loss:
    -log of that attention weight); (2) a linear layer on that layer's input there classifies k, so
    the query holds the number it looks for (the answer's " k" one token back). The head's scores
    are recomputed here as the layer computes them (its RMSNorm, q/k projections, RoPE,
    1/sqrt(head_dim)); nothing is added to the model, the linear layer is discarded."""

    def __init__(self, torch, model, layer: int, head: int):
        self.torch = torch
        lm = model.model.language_model
        self.rotary, self.layer = lm.rotary_emb, lm.layers[layer]
        cfg = model.config.text_config
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.head, self.kv_head = head, head // (cfg.num_attention_heads // cfg.num_key_value_heads)
        self.number = torch.nn.Linear(cfg.hidden_size, shapes.MAX_IMAGES)

    def parameters(self) -> list:
        return list(self.number.parameters())

    def loss(self, hidden, reads):
        """(loss, -log attention weight on the number token) as means over reads [(conversation,
        position, number position, image)]; hidden [batch, tokens, width] is the layer's input.
        None when there are no reads."""
        if not reads:
            return None
        torch, d = self.torch, self.head_dim
        b = torch.tensor([r[0] for r in reads])
        q_at = torch.tensor([r[1] for r in reads])
        k_at = torch.tensor([r[2] for r in reads])
        image = torch.tensor([r[3] for r in reads])
        x = self.layer.input_layernorm(hidden)  # [B, T, width]
        att = self.layer.self_attn
        q = att.q_proj(x[b, q_at])[:, self.head * d: (self.head + 1) * d]  # [n, d]
        k = att.k_proj(x)[:, :, self.kv_head * d: (self.kv_head + 1) * d]  # [B, T, d]
        cos, sin = self.rotary(x, torch.arange(x.shape[1]).unsqueeze(0))  # [1, T, d] each

        def rope(v, c, s):  # Llama's rotate-half RoPE
            v1, v2 = v[..., : d // 2], v[..., d // 2:]
            return v * c + torch.cat((-v2, v1), dim=-1) * s

        q = rope(q, cos[0, q_at], sin[0, q_at])  # [n, d]
        k = rope(k, cos, sin)[b]  # [n, T, d]
        scores = torch.einsum("nd,ntd->nt", q, k) / math.sqrt(d)
        causal = torch.arange(x.shape[1])[None] > q_at[:, None]
        logp = torch.log_softmax(scores.masked_fill(causal, float("-inf")), dim=-1)
        nll = -logp[torch.arange(len(reads)), k_at].mean()
        which = torch.nn.functional.cross_entropy(self.number(hidden[b, q_at]), image)
        return nll + which, nll


def scene_targets(torch, scenes):
    """[n, 3] class indices: colour, shape, position."""
    return torch.tensor([(list(shapes.COLORS).index(s.color), shapes.SHAPES.index(s.shape),
                          shapes.POSITIONS.index(s.position)) for s in scenes])


def attribute_loss(torch, logits, targets) -> tuple:
    """(summed cross-entropy, [accuracy]) of logits [n, 14] (colour 6 | shape 3 | position 5)
    against targets [n, 3]."""
    cuts = (0, len(shapes.COLORS), len(shapes.COLORS) + len(shapes.SHAPES), N_ATTRIBUTES)
    total, acc = 0.0, []
    for i in range(3):
        lg = logits[:, cuts[i]: cuts[i + 1]]
        total = total + torch.nn.functional.cross_entropy(lg, targets[:, i])
        acc.append((lg.argmax(-1) == targets[:, i]).float().mean().item())
    return total, acc


def data_seeds(seed: int = 0, steps: int = STEPS, vision_steps: int = VISION_STEPS) -> tuple[range, range]:
    """The random.Random seeds the training data is drawn from: (stage 2, stage 1), step i of a
    stage from element i. (The quick evaluations' scenes, from 10_000 + step and 99_999, train
    nothing.) bench/vlm_quality.py keeps its test set out of these."""
    base = seed * 1_000_003
    return range(base, base + steps), range(base + 500_000, base + 500_000 + vision_steps)


def pretrain_vision(model, proc, aux, torch, seeds: range, lr: float, batch: int = 64) -> list[float]:
    """Stage 1: the vision tower alone with the auxiliary head, on batches of single scenes, one
    step per seed. Returns the last batch's colour / shape / position accuracy."""
    from tqdm import tqdm

    params = list(model.model.vision_tower.parameters()) + aux.parameters()
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.05)
    acc = [0.0, 0.0, 0.0]
    steps = len(seeds)
    bar = tqdm(range(steps), desc="vision", mininterval=5)
    for step in bar:
        rng = random.Random(seeds[step])
        drawn = [shapes.draw_scene(rng) for _ in range(batch)]
        pv = proc.image_processor([im for im, _ in drawn], return_tensors="pt")["pixel_values"]
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, warmup=50)
        loss, acc = aux.loss(model, pv, [s for _, s in drawn])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", acc="/".join(f"{a:.2f}" for a in acc), refresh=False)
    return acc


def plan(step: int, steps: int, rng: random.Random) -> tuple[int, int]:
    """(conversations in the batch, images per conversation) of a stage-2 step: single images for
    the first 10% of the steps, then one step in four; the multi-image steps draw 2..n_max images,
    n_max growing from 4 to 16 between 10% and 50% of the steps."""
    if step < 0.1 * steps or step % 4 == 0:
        return 16, 1
    grow = min(1.0, max(0.0, (step / steps - 0.1) / 0.4))
    n_max = 4 + round(grow * (shapes.MAX_IMAGES - 4))
    n = rng.randint(2, n_max)
    return max(2, 40 // n), n


def lr_at(step: int, steps: int, peak: float, warmup: int = 150) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def evaluate(model, enc, torch, seed: int, n: int = 48) -> dict[str, float]:
    """Greedy answers on fresh scenes: single-image colour / shape, 8-image colour."""
    rng = random.Random(seed)
    model.eval()
    res = {}
    cases = {
        "color1": lambda: (1, shapes.COLOR_QUESTIONS[0], "color"),
        "shape1": lambda: (1, shapes.SHAPE_QUESTIONS[0], "shape"),
        "color8": lambda: (8, None, "color"),
    }
    for name, make in cases.items():
        ok = 0
        for _ in range(n):
            n_img, q, key = make()
            drawn = [shapes.draw_scene(rng) for _ in range(n_img)]
            k = rng.randrange(n_img)
            if q is None:
                q = shapes.color_question_multi(k + 1)
            msgs = [{"role": "user", "content": [{"type": "image"} for _ in drawn] + [{"type": "text", "text": q}]}]
            ids = torch.tensor([enc.prompt_ids(msgs)])
            pv = enc.proc.image_processor([im for im, _ in drawn], return_tensors="pt")["pixel_values"]
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pv,
                                     max_new_tokens=8, do_sample=False, pad_token_id=enc.pad)
            text = enc.tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
            ok += shapes.answer_words(text)[key] == getattr(drawn[k][1], key)
        res[name] = ok / n
    model.train()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="work directory (HF checkpoint in OUT/hf, GGUF in OUT/demo-vlm.gguf)")
    ap.add_argument("--steps", type=int, default=STEPS, help="stage 2: projector and decoder")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--vision-steps", type=int, default=VISION_STEPS, help="stage 1: the vision tower alone (AuxHead)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=0, help="steps between quick evaluations (0: only at the end)")
    ap.add_argument("--outtype", default="q8_0", help="akvq-convert --outtype of the GGUF")
    ap.add_argument("--no-convert", action="store_true")
    ap.add_argument("--install", action="store_true", help="copy the GGUF to pyakvq/data/demo-vlm.gguf")
    args = ap.parse_args()

    import torch
    from tqdm import tqdm

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer()
    model, proc, _ = build(tok)
    enc = Encoder(proc, torch)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"vocab {len(tok)} (rows {model.config.text_config.vocab_size}), parameters {n_params / 1e6:.2f} M",
          flush=True)
    aux = AuxHead(torch, model.config.vision_config.hidden_size)
    t0 = time.time()
    seeds2, seeds1 = data_seeds(args.seed, args.steps, args.vision_steps)
    vacc = pretrain_vision(model, proc, aux, torch, seeds1, args.lr)
    print(f"vision stage: {time.time() - t0:.0f} s, colour/shape/position accuracy of the last batch {vacc}",
          flush=True)
    # Stage 2 keeps the vision tower frozen, as LLaVA-1.5 keeps CLIP: its features already carry
    # colour, shape and position (the auxiliary head's accuracy above) in every row.
    for p in model.model.vision_tower.parameters():
        p.requires_grad_(False)
    probe = NumberProbe(torch, model.config.text_config.hidden_size)
    guide = ReadGuide(torch, model, GUIDE_LAYER, GUIDE_HEAD)
    groups = {True: [], False: []}  # weight decay on the matrices but the embeddings
    for n, p in model.named_parameters():
        if p.requires_grad:
            groups[p.ndim >= 2 and "embed" not in n].append(p)
    aux_params = probe.parameters() + guide.parameters()  # trained with the model, then discarded
    for p in aux_params:
        groups[p.ndim >= 2].append(p)
    opt = torch.optim.AdamW([{"params": groups[True], "weight_decay": 0.05},
                             {"params": groups[False], "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98))
    model.train()
    log = []
    ema, probe_acc, guide_nll = None, [0.0, 0.0, 0.0], 0.0
    bar = tqdm(range(args.steps), desc="train", mininterval=5)
    for step in bar:
        rng = random.Random(seeds2[step])
        bs, n_img = plan(step, args.steps, rng)
        examples = [sample(rng, n_img) for _ in range(bs)]
        ids, att, lab, pv, numbers, reads = enc.batch([(qa, [im for im, _ in drawn]) for qa, drawn in examples])
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr)
        res = model(input_ids=ids, attention_mask=att, pixel_values=pv, labels=lab, output_hidden_states=True)
        loss = res.loss
        probe_loss = probe.loss(res.hidden_states[PROBE_LAYER], numbers, [[s for _, s in d] for _, d in examples])
        if probe_loss is not None:
            loss = loss + PROBE_WEIGHT * probe_loss[0]
        guide_loss = guide.loss(res.hidden_states[GUIDE_LAYER], reads)
        if guide_loss is not None:
            loss = loss + GUIDE_WEIGHT * guide_loss[0]
            guide_nll = guide_loss[1].item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()) + aux_params, 1.0)
        opt.step()
        ema = res.loss.item() if ema is None else 0.95 * ema + 0.05 * res.loss.item()  # the LM loss alone
        if probe_loss is not None:
            probe_acc = probe_loss[1]
        bar.set_postfix(loss=f"{ema:.3f}", imgs=n_img, probe="/".join(f"{a:.2f}" for a in probe_acc),
                        read=f"{guide_nll:.2f}", refresh=False)
        if args.eval_every and (step + 1) % args.eval_every == 0:
            r = evaluate(model, enc, torch, seed=10_000 + step, n=24)
            log.append({"step": step + 1, "loss": ema, **r, "seconds": time.time() - t0})
            tqdm.write(json.dumps(log[-1]))
    train_s = time.time() - t0  # both stages
    r = evaluate(model, enc, torch, seed=99_999, n=48)
    summary = {"steps": args.steps, "seed": args.seed, "threads": args.threads, "train_seconds": round(train_s),
               "loss": ema, "parameters": n_params, "vision_stage_accuracy": vacc, "eval": r, "log": log}
    print(json.dumps(summary), flush=True)
    hf = out / "hf"
    if hf.exists():
        shutil.rmtree(hf)
    model.save_pretrained(str(hf))
    proc.save_pretrained(str(hf))
    (out / "train.json").write_text(json.dumps(summary, indent=1))
    if args.no_convert:
        return
    gguf = out / "demo-vlm.gguf"
    # The installed akvq-convert, else this Python's pyakvq (e.g. PYTHONPATH=. AKVQ_EXT_DIR=build/dev).
    conv = [shutil.which("akvq-convert")] if shutil.which("akvq-convert") else [sys.executable, "-m", "pyakvq.convert"]
    raw = out / "demo-vlm.converted.gguf"
    subprocess.run(conv + [str(hf), "-o", str(raw), "--outtype", args.outtype, "--name", "pyakvq demo VLM (shapes)",
                           "-q"], check=True, cwd=ROOT)
    # CHAT_TEMPLATE labels each image of a multi-image turn; akvq-cli's built-in formats do not
    # render Jinja, so the label is stated for them (ModelInfo::image_label)
    from pyakvq.gguf_keys import copy_with_key, string_value

    copy_with_key(raw, gguf, "akvq.chat.image_label", string_value(IMAGE_LABEL))
    raw.unlink()
    print(f"wrote {gguf} ({gguf.stat().st_size / 1e6:.1f} MB)")
    if args.install:
        dest = ROOT / "pyakvq" / "data" / "demo-vlm.gguf"
        dest.parent.mkdir(exist_ok=True)
        shutil.copyfile(gguf, dest)
        print(f"installed {dest}")


if __name__ == "__main__":
    main()
