"""Task types beyond sentence classification: reading, tokenizing, batching, heads, losses, metrics.

The model-level tests build one mixed batch of every type (classification, regression, multiple choice
with 2 and 5 choices, token classification, masked LM) and check it against each example run alone.
"""

import math

import pytest
import torch
from transformers import BertConfig

from camtl.data.collation import IGNORE, Masking, MultiTaskCollator, model_inputs, select_examples
from camtl.data.features import TaskDataset, TaskFeatures, tokenize_examples
from camtl.data.splits import read_split
from camtl.model import CaMtlConfig, CaMtlModel
from camtl.model.heads import reduce_loss
from camtl.tasks import TASKS
from camtl.training.metrics import compute_metrics, summarize

# Splits and sizes as ../shared/data/README.md gives them.
SHARED_SIZES = {
    ("commonsenseqa", "train"): 9741, ("commonsenseqa", "dev"): 1221, ("commonsenseqa", "test"): 1140,
    ("copa", "train"): 400, ("copa", "dev"): 100,
    ("cb", "train"): 250, ("cb", "dev"): 56, ("cb", "test"): 250,
    ("wic", "train"): 5428, ("wic", "dev"): 638, ("boolq", "dev"): 3270, ("wnut17", "train"): 3394,
    ("wnut17", "dev"): 1009, ("wnut17", "test"): 1287, ("snli", "dev"): 9842, ("snli", "test"): 9824,
    ("scitail", "dev"): 2126,
}  # fmt: skip
MIXED_TASKS = ["cola", "sts-b", "copa", "commonsenseqa", "wnut17", "wikitext2-mlm"]


def test_every_built_in_split_reads_with_its_published_size(shared_data):
    for (task, split), size in SHARED_SIZES.items():
        examples = read_split(shared_data, task, split)
        assert len(examples) == size, (task, split)
        assert examples.skipped == 0
    copa = read_split(shared_data, "copa", "dev", max_examples=2)
    assert copa.text_a[0].endswith("What was the effect?") and len(copa.choices[0]) == 2
    wic = read_split(shared_data, "wic", "train", max_examples=1)
    assert wic.text_a[0] == "place: Do you want to come over to my place later?" and wic.labels == [0.0]
    snli = read_split(shared_data, "snli", "dev", max_examples=1)
    assert TASKS["snli"].labels[int(snli.labels[0])] == "neutral"  # the file's 1, by its label names
    wnut = read_split(shared_data, "wnut17", "train", max_examples=1)
    assert len(wnut.text_a[0]) == len(wnut.labels[0]) and wnut.text_a[0][0] == "@paulwalk"


def test_a_split_that_the_data_lacks_is_an_error_naming_the_file(shared_data):
    from camtl.errors import UsageError

    with pytest.raises(UsageError, match="no train split"):
        read_split(shared_data, "boolq", "train")


def features_of(task: str, examples, tokenizer, max_seq_length: int = 32) -> TaskFeatures:
    return tokenize_examples(examples, tokenizer, max_seq_length)


def examples_of(task: str):
    """A few hand-written examples of each type."""
    from camtl.data.examples import Examples

    rows = {
        "cola": dict(text_a=["the cat sat", "sat cat the on"], text_b=None, labels=[1.0, 0.0]),
        "sts-b": dict(text_a=["a dog runs", "two cats"], text_b=["a dog is running", "a bus"],
                      labels=[4.5, 0.2]),
        "copa": dict(text_a=["it rained. What was the effect?"], text_b=None, labels=[1.0],
                     choices=[["the sun shone", "the street got wet"]]),
        "commonsenseqa": dict(text_a=["where do you keep milk?"], text_b=None, labels=[2.0],
                              choices=[["a shoe", "a car", "a fridge", "a book", "a tree"]]),
        "wnut17": dict(text_a=[["Paris", "is", "nice"], ["I", "met", "John", "Smith"]], text_b=None,
                       labels=[[7, 0, 0], [0, 0, 9, 10]]),
        "wikitext2-mlm": dict(text_a=["the cat sat on the mat and the dog sat on the log"], text_b=None,
                              labels=None),
    }[task]  # fmt: skip
    return Examples(task=task, split="dev", ids=[str(i) for i in range(len(rows["text_a"]))], **rows)


def test_tokenization_per_type(bundled_tokenizer):
    mc = features_of("commonsenseqa", examples_of("commonsenseqa"), bundled_tokenizer)
    assert len(mc) == 1 and mc.example_offsets.tolist() == [0, 5]
    first_choice = mc.input_ids[mc.offsets[0] : mc.offsets[1]].tolist()
    assert first_choice == bundled_tokenizer("where do you keep milk?", "a shoe")["input_ids"]
    tagged = features_of("wnut17", examples_of("wnut17"), bundled_tokenizer)
    tokens = tagged.input_ids[tagged.offsets[1] : tagged.offsets[2]].tolist()
    labels = tagged.token_labels[tagged.offsets[1] : tagged.offsets[2]].tolist()
    words = bundled_tokenizer(["I", "met", "John", "Smith"], is_split_into_words=True)
    assert tokens == words["input_ids"]
    word_ids = words.word_ids()
    first = [w is not None and (i == 0 or word_ids[i - 1] != w) for i, w in enumerate(word_ids)]
    expected = [[0, 0, 9, 10][w] if is_first else IGNORE for w, is_first in zip(word_ids, first, strict=True)]
    assert labels == expected and tagged.word_tags == [[7, 0, 0], [0, 0, 9, 10]]
    mlm = features_of("wikitext2-mlm", examples_of("wikitext2-mlm"), bundled_tokenizer, max_seq_length=8)
    lengths = mlm.sequence_lengths.tolist()
    assert max(lengths) <= 8 and len(mlm) == math.ceil(13 / 6)
    block = mlm.input_ids[mlm.offsets[0] : mlm.offsets[1]].tolist()
    assert block[0] == bundled_tokenizer.cls_token_id and block[-1] == bundled_tokenizer.sep_token_id


@pytest.fixture
def mixed(bundled_tokenizer):
    """A model over the six tasks and one mixed batch holding every type."""
    torch.manual_seed(0)
    bert = BertConfig(vocab_size=bundled_tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)  # fmt: skip
    model = CaMtlModel(
        CaMtlConfig(layout="base", backbone=bert.to_dict(), tasks=MIXED_TASKS, max_seq_length=32)
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    items = []
    for task_id, task in enumerate(MIXED_TASKS):
        dataset = TaskDataset(features_of(task, examples_of(task), bundled_tokenizer), task_id)
        items += [dataset[i] for i in range(len(dataset))]
    collator = MultiTaskCollator(
        bundled_tokenizer.pad_token_id, masking=Masking.of(bundled_tokenizer), fixed_masks=True
    )
    return model.eval(), items, collator


def forward(model, batch):
    return model(**model_inputs(batch))


def test_the_collator_lays_out_a_mixed_batch(mixed, bundled_tokenizer):
    _, items, collator = mixed
    batch = collator(items)
    sizes = [1 if "choices" not in item else len(item["choices"]) for item in items]
    assert batch["input_ids"].shape[0] == sum(sizes) == len(batch["sequence_owner"])
    assert batch["choice_sequences"].shape == (len(items), 5)
    copa_row = [i for i, item in enumerate(items) if item["task_id"] == 2][0]
    assert (batch["choice_sequences"][copa_row] >= 0).sum() == 2
    width = batch["input_ids"].shape[1]
    mlm_sequences = batch["mlm_positions"] // width
    assert all(
        int(batch["sequence_owner"][s]) == len(items) - 1 for s in mlm_sequences
    )  # the one MLM example
    assert torch.all(batch["mlm_positions"] % width > 0)  # never [CLS]
    assert torch.equal(collator(items)["mlm_positions"], batch["mlm_positions"])  # fixed masks for evaluation
    original = items[-1]["input_ids"]
    assert torch.equal(batch["mlm_labels"], original[batch["mlm_positions"] % width])
    assert (batch["token_labels"] != IGNORE).sum() == 3 + 4  # one label per word of the two sentences


def test_a_mixed_batch_equals_each_example_alone(mixed):
    model, items, collator = mixed
    with torch.no_grad():
        together = forward(model, collator(items))
        for row, item in enumerate(items):
            alone = forward(model, collator([item]))
            width = alone.logits.shape[1]
            torch.testing.assert_close(together.logits[row, :width], alone.logits[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(
                together.example_losses[row], alone.example_losses[0], atol=1e-5, rtol=1e-5
            )
            torch.testing.assert_close(together.entropy[row], alone.entropy[0], atol=1e-5, rtol=1e-5)


def test_multiple_choice_scores_each_choice_with_its_context(mixed):
    model, items, collator = mixed
    row = [i for i, item in enumerate(items) if item["task_id"] == 3][0]  # commonsenseqa, 5 choices
    with torch.no_grad():
        output = forward(model, collator([items[row]]))
        scores = []
        for choice in items[row]["choices"]:
            single = collator([{**items[0], **choice, "task_id": 3}])
            _, pooled = model.encode(
                single["input_ids"],
                single.get("attention_mask"),
                single["token_type_ids"],
                single["task_ids"],
            )
            column = model.heads.sequence_offsets[3]
            scores.append(model.heads.classifier(pooled)[0, column])
    torch.testing.assert_close(output.logits[0], torch.stack(scores), atol=1e-5, rtol=1e-5)
    expected = -torch.stack(scores).log_softmax(0)[int(items[row]["label"])]
    torch.testing.assert_close(output.example_losses[0], expected, atol=1e-5, rtol=1e-5)
    probabilities = torch.stack(scores).softmax(0)
    entropy = -(probabilities * probabilities.log()).sum() / (math.log(5) + 1e-5)
    torch.testing.assert_close(output.entropy[0], entropy, atol=1e-5, rtol=1e-5)


def test_token_and_masked_lm_losses_are_means_over_their_positions(mixed):
    model, items, collator = mixed
    tagged = [item for item in items if item["task_id"] == 4][1]
    with torch.no_grad():
        batch = collator([tagged])
        output = forward(model, batch)
        labelled = batch["token_labels"][0] != IGNORE
        logits = output.token_logits[0][labelled]
        torch.testing.assert_close(
            output.example_losses[0],
            torch.nn.functional.cross_entropy(logits, batch["token_labels"][0][labelled]),
        )
        assert output.token_logits.shape[-1] == len(TASKS["wnut17"].labels)
        text = collator([items[-1]])
        mlm = forward(model, text)
        torch.testing.assert_close(
            mlm.example_losses[0], torch.nn.functional.cross_entropy(mlm.mlm_logits, text["mlm_labels"])
        )
        assert mlm.mlm_logits.shape == (len(text["mlm_labels"]), model.config.backbone["vocab_size"])


def test_the_mlm_decoder_is_tied_to_the_input_embeddings(mixed):
    model, items, collator = mixed
    output = forward(model.train(), collator([items[-1]]))
    output.loss.backward()
    assert model.backbone.embeddings.word_embeddings.weight.grad is not None
    assert "heads.mlm.decoder.weight" not in dict(model.named_parameters())


def test_selecting_examples_equals_collating_only_them(mixed):
    model, items, collator = mixed
    keep = torch.tensor([5, 2, 3, 0])
    selected = select_examples(collator(items), keep)
    direct = collator([items[int(i)] for i in keep])
    with torch.no_grad():
        a, b = forward(model, selected), forward(model, direct)
    torch.testing.assert_close(a.example_losses, b.example_losses, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.entropy, b.entropy, atol=1e-5, rtol=1e-5)


def test_loss_weights_scale_each_task_in_both_reductions():
    losses, task_ids, weights = (
        torch.tensor([1.0, 3.0, 2.0]),
        torch.tensor([0, 0, 1]),
        torch.tensor([0.5, 2.0]),
    )
    assert reduce_loss(losses, task_ids, weights, "task_mean") == pytest.approx((0.5 * 2.0 + 2.0 * 2.0) / 2)
    assert reduce_loss(losses, task_ids, weights, "example_mean") == pytest.approx((0.5 + 1.5 + 4.0) / 3)


def test_metrics_per_type():
    tags = TASKS["wnut17"].labels
    b_person, i_person = tags.index("B-person"), tags.index("I-person")
    gold = [[b_person, i_person, 0], [0, b_person]]
    entity = compute_metrics("wnut17", [[b_person, i_person, 0], [0, 0]], gold)
    assert entity["entity_precision"] == 1.0 and entity["entity_recall"] == 0.5
    assert entity["score"] == pytest.approx(2 / 3)
    mlm = compute_metrics("wikitext2-mlm", {"correct": 3, "masked": 4, "loss_sum": 2.0}, None)
    assert mlm["masked_accuracy"] == 0.75 and mlm["masked_loss"] == 0.5
    choice = compute_metrics("copa", [1, 0, 1], [1, 1, 1])
    assert choice["accuracy"] == pytest.approx(2 / 3)
    summary = summarize({"rte": compute_metrics("rte", [1, 0], [1, 1]), "copa": choice})
    assert summary["glue_average"] == 0.5 and summary["average"] == pytest.approx((0.5 + 2 / 3) / 2)


def test_masked_lm_uses_the_checkpoints_mlm_head_when_it_has_one(tmp_path, bundled_tokenizer):
    from transformers import BertForMaskedLM

    from camtl.model import load_model

    torch.manual_seed(0)
    config = BertConfig(vocab_size=bundled_tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)  # fmt: skip
    pretrained = BertForMaskedLM(config)
    pretrained.save_pretrained(tmp_path)
    model = load_model(str(tmp_path), ["sst-2", "wikitext2-mlm"], layout="base", max_seq_length=32)
    head = pretrained.cls.predictions
    assert torch.equal(model.heads.mlm.dense.weight, head.transform.dense.weight)
    assert torch.equal(model.heads.mlm.bias, head.bias)
    fresh = load_model("CA-MTL-mini", ["sst-2", "wikitext2-mlm"], max_seq_length=32)  # a BertModel: no head
    assert torch.count_nonzero(fresh.heads.mlm.bias) == 0


def test_token_and_masked_lm_entropies_are_means_of_normalised_entropies(mixed):
    model, items, collator = mixed
    with torch.no_grad():
        batch = collator([[item for item in items if item["task_id"] == 4][1]])
        output = forward(model, batch)
        labelled = batch["token_labels"][0] != IGNORE
        probabilities = output.token_logits[0][labelled].softmax(-1)
        per_word = -(probabilities * probabilities.clamp(min=1e-30).log()).sum(-1) / (math.log(13) + 1e-5)
        torch.testing.assert_close(output.entropy[0], per_word.mean(), atol=1e-5, rtol=1e-5)
        text = collator([items[-1]])
        mlm = forward(model, text)
        probabilities = mlm.mlm_logits.softmax(-1)
        vocab = mlm.mlm_logits.shape[1]
        per_position = -(probabilities * probabilities.clamp(min=1e-30).log()).sum(-1) / (
            math.log(vocab) + 1e-5
        )
        torch.testing.assert_close(mlm.entropy[0], per_position.mean(), atol=1e-5, rtol=1e-5)
