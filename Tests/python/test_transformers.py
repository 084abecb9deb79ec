"""attn_implementation="attnkit" in Hugging Face transformers, on tiny models with random weights:
a BERT-style encoder, a GQA Mistral-style decoder with a sliding window, and a Gemma-2-style
decoder with attention softcapping. Hidden states against transformers' own backends (fp32,
padded batches on either side), greedy generation, packed sequences, and attention weights."""
import pytest
import torch

transformers = pytest.importorskip("transformers")
import attnkit.integrations.transformers as backend  # noqa: E402

# The hidden states must match transformers' own backend this closely in fp32.
HIDDEN_TOLERANCE = 1e-5
VOCAB = 97


@pytest.fixture(scope="module", autouse=True)
def _registered():
    backend.register()


def _bert():
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128, max_position_embeddings=64)
    return transformers.BertModel(config).eval()


def _mistral():
    config = transformers.MistralConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=128,
                                        sliding_window=5)
    return transformers.MistralForCausalLM(config).eval()


def _gemma2():
    config = transformers.Gemma2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                       max_position_embeddings=128, sliding_window=5, attn_logit_softcapping=5.0,
                                       final_logit_softcapping=30.0)
    return transformers.Gemma2ForCausalLM(config).eval()


# (model factory, the transformers backend to compare with). transformers' "sdpa" backend refuses
# softcap, so Gemma-2 is compared with its "eager" backend.
MODELS = {"bert": (_bert, "sdpa"), "mistral": (_mistral, "sdpa"), "gemma2": (_gemma2, "eager")}


def _hidden(model, implementation, **inputs):
    model.set_attn_implementation(implementation)
    with torch.no_grad():
        output = model(**inputs, output_hidden_states=True)
    return output.hidden_states[-1]


def _padded_batch(side, length=13):
    ids = torch.randint(1, VOCAB, (3, length))
    mask = torch.ones(3, length, dtype=torch.long)
    for row, pad in ((0, 4), (2, 1)):
        if side == "left":
            mask[row, :pad] = 0
        else:
            mask[row, length - pad:] = 0
    return ids, mask


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("name", list(MODELS))
def test_hidden_states_match_transformers_backend(name, side):
    """Every unpadded token's last hidden state, against transformers' backend. Padded positions
    are not compared: no real token reads them (attnkit writes 0 there, as flash_attention_2 does)."""
    factory, reference = MODELS[name]
    torch.manual_seed(1)
    model = factory()
    ids, mask = _padded_batch(side)
    ours = _hidden(model, "attnkit", input_ids=ids, attention_mask=mask)
    theirs = _hidden(model, reference, input_ids=ids, attention_mask=mask)
    error = ((ours - theirs).abs() * mask[..., None]).max().item()
    assert error <= HIDDEN_TOLERANCE, f"{name} {side} padding: max difference {error:.3e} from {reference}"
    # and the padding is really masked: the padded row's tokens equal the same sequence run alone
    # (not for BERT with left padding: its absolute position embeddings shift with the padding)
    if name == "bert" and side == "left":
        return
    valid = mask[0].bool()
    alone = _hidden(model, "attnkit", input_ids=ids[0:1, valid])
    assert (ours[0, valid] - alone[0]).abs().max().item() <= HIDDEN_TOLERANCE


@pytest.mark.parametrize("name", ["mistral", "gemma2"])
def test_greedy_generation_matches(name):
    factory, reference = MODELS[name]
    torch.manual_seed(2)
    model = factory()
    ids, mask = _padded_batch("left", length=9)
    tokens = {}
    for implementation in ("attnkit", reference):
        model.set_attn_implementation(implementation)
        tokens[implementation] = model.generate(ids, attention_mask=mask, max_new_tokens=20, do_sample=False,
                                                min_new_tokens=20, pad_token_id=0)
    assert tokens["attnkit"].shape[1] == ids.shape[1] + 20
    assert torch.equal(tokens["attnkit"], tokens[reference])


@pytest.mark.parametrize("name", ["mistral", "gemma2"])
def test_packed_sequences_equal_padded_run(name):
    """Three documents in one row (position_ids restarting at 0) against the same documents as a
    right-padded batch: the varlen path, no token attending across a document boundary."""
    factory, _ = MODELS[name]
    torch.manual_seed(3)
    model = factory()
    lengths = [6, 11, 3]
    documents = [torch.randint(1, VOCAB, (n,)) for n in lengths]
    packed = torch.cat(documents)[None]
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    ours = _hidden(model, "attnkit", input_ids=packed, position_ids=positions)[0]
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, document in enumerate(documents):
        ids[row, :len(document)] = document
        mask[row, :len(document)] = 1
    padded = _hidden(model, "attnkit", input_ids=ids, attention_mask=mask)
    start = 0
    for row, n in enumerate(lengths):
        error = (ours[start:start + n] - padded[row, :n]).abs().max().item()
        assert error <= HIDDEN_TOLERANCE, f"document {row}: {error:.3e}"
        start += n


def test_packed_cu_seq_lens_kwargs():
    """flash_attention_2's packed-batch kwargs (cu_seq_lens_q/k, max_length_q/k) run as varlen."""
    torch.manual_seed(4)
    model = _mistral()
    attention = model.model.layers[0].self_attn
    q = torch.randn(1, 4, 10, 16)
    k, v = torch.randn(1, 1, 10, 16), torch.randn(1, 1, 10, 16)
    cu = torch.tensor([0, 4, 10], dtype=torch.int32)
    out, _ = backend.attention_forward(attention, q, k, v, None, scaling=0.25, cu_seq_lens_q=cu, cu_seq_lens_k=cu,
                                       max_length_q=6, max_length_k=6, is_causal=True)
    for start, end in ((0, 4), (4, 10)):
        want = torch.nn.functional.scaled_dot_product_attention(q[:, :, start:end], k[:, :, start:end],
                                                                v[:, :, start:end], is_causal=True, scale=0.25,
                                                                enable_gqa=True)
        assert (out[0, start:end] - want[0].transpose(0, 1)).abs().max().item() <= HIDDEN_TOLERANCE


def test_attention_weights_through_the_eager_kernel():
    """output_attentions=True returns the weights (eager kernel), equal to transformers' eager backend's."""
    torch.manual_seed(5)
    model = _bert()
    ids, mask = _padded_batch("right")
    results = {}
    for implementation in ("attnkit", "eager"):
        model.set_attn_implementation(implementation)
        with torch.no_grad():
            results[implementation] = model(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
    assert len(results["attnkit"]) == 2
    for ours, theirs in zip(results["attnkit"], results["eager"]):
        assert ours.shape == theirs.shape == (3, 4, 13, 13)
        rows = mask.bool()[:, None, :, None].expand_as(ours)   # padded query rows differ, as for hidden states
        assert (ours - theirs).abs()[rows].max().item() <= HIDDEN_TOLERANCE


def test_training_step_has_gradients():
    """A loss through the attnkit backend backpropagates into the attention projections."""
    torch.manual_seed(6)
    model = _mistral().train()
    model.set_attn_implementation("attnkit")
    ids, mask = _padded_batch("left")
    loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
    loss.backward()
    grad = model.model.layers[0].self_attn.q_proj.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
