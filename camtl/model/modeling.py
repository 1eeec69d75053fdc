"""CaMtlModel: a stock Hugging Face encoder with CA-MTL's conditional modules, pooling and task heads.

forward: task ids -> TaskCondition (e, z), bound to the conditional modules inside the backbone ->
backbone -> (large layout) the adapter stream over the layer outputs -> pooling -> heads -> loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

from camtl.errors import UsageError
from camtl.model.conditioning import condition_backbone, norm_eps
from camtl.model.configuration import CaMtlConfig
from camtl.model.families import family_of
from camtl.model.heads import HeadInputs, TaskHeads, pool, reduce_loss
from camtl.model.modules import (
    ConditionalAttentionBias,
    ConditionalModule,
    ConditionalStream,
    TaskConditioned,
    TaskEmbedding,
)
from camtl.tasks import canonical_task_name


@dataclass
class CaMtlOutput(ModelOutput):
    """loss: the batch loss (when labels are given, reduced by ``config.loss_reduction``); logits
    (B, max_num_labels), -inf past a task's classes; entropy (B,): normalised predictive entropy."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    example_losses: torch.Tensor | None = None  # (B,) each example's loss, before the batch's reduction
    token_logits: torch.Tensor | None = None  # (S, L, K) with token-classification tasks
    mlm_logits: torch.Tensor | None = None  # (M, V) at the masked positions, with masked-LM tasks


class CaMtlModel(PreTrainedModel):
    """CA-MTL on a stock backbone. Layout "none" has no conditional module: the multitask baseline."""

    config_class = CaMtlConfig
    base_model_prefix = "camtl"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True

    def __init__(self, config: CaMtlConfig):
        super().__init__(config)
        self.family = family_of(config.backbone["model_type"])
        self.backbone = AutoModel.from_config(config.backbone_config())
        if config.pooling == "mean" and getattr(self.backbone, "pooler", None) is not None:
            self.backbone.pooler = None  # unused, and DDP refuses parameters without gradients
        conditional = config.layout != "none"
        self.task_embedding = TaskEmbedding(len(config.tasks), config.hidden_size) if conditional else None
        if conditional:
            condition_backbone(self.backbone, config)
        self.stream = (
            ConditionalStream(
                config.num_layers,
                config.hidden_size,
                config.hidden_size // 3,
                norm_eps(self.backbone.config),
                config.adapter_activation,
                residual=config.stream_residual,
            )
            if config.has_stream
            else None
        )
        backbone_config = self.backbone.config
        self.heads = TaskHeads(
            config,
            vocab_size=backbone_config.vocab_size,
            activation=getattr(backbone_config, "hidden_act", "gelu"),
            eps=norm_eps(backbone_config),
        )
        self.post_init()
        self.init_conditional_modules()

    @property
    def initializer_range(self) -> float:
        return getattr(self.backbone.config, "initializer_range", 0.02)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Modules outside the backbone: the heads and the task embedding (the backbone inits its own).
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=self.initializer_range)
            nn.init.zeros_(module.bias)
        elif isinstance(module, TaskHeads):
            for name, table in module.tables().items():
                module.get_buffer(name).copy_(table)

    @torch.no_grad()
    def init_conditional_modules(self) -> None:
        """The authors' initialisation of every conditional module, whatever the backbone's own scheme:
        linear weights and embeddings ~ N(0, initializer_range), biases 0 (FiLM starts at gamma = beta = 0
        up to the random weights), layer norms 1 and 0, the attention bias matrix W at 0."""
        for root in self.modules():
            if not isinstance(root, ConditionalModule):
                continue
            for module in root.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(module.weight, std=self.initializer_range)
                    if getattr(module, "bias", None) is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, ConditionalAttentionBias):
                    nn.init.zeros_(module.weight)
                elif "LayerNorm" in type(module).__name__:
                    nn.init.ones_(module.weight)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)

    def task_index(self, name: str) -> int:
        """Task id of a task name (any spelling camtl.tasks accepts) in this model's task list."""
        task = canonical_task_name(name)
        if task not in self.config.tasks:
            raise UsageError(
                f"task '{name}' is not one of this model's tasks ({', '.join(self.config.tasks)})"
            )
        return self.config.tasks.index(task)

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        task_ids: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(sequence_output (B, L, d), pooled_output (B, d))."""
        condition = None
        if self.task_embedding is not None:
            condition = self.task_embedding(task_ids)
            for module in self.modules():  # a loop over modules, not examples: binds this batch's condition
                if isinstance(module, TaskConditioned):
                    module.bind(condition)
        mask = attention_mask
        if mask is not None and self.family.broadcast_mask:
            mask = mask[:, None, None, :].bool()  # (B, 1, 1, L), True = attend
        inputs = {"input_ids": input_ids, "attention_mask": mask}
        # A type vocabulary of 0 or 1 (RoBERTa, DeBERTa-v3) has no second segment: a BERT-style
        # tokenizer's 1s would index past it, and the backbone's own default (all 0) is what it knows.
        if (
            self.family.token_types
            and token_type_ids is not None
            and self.config.backbone.get("type_vocab_size", 2) > 1
        ):
            inputs["token_type_ids"] = token_type_ids
        outputs = self.backbone(**inputs, output_hidden_states=self.stream is not None)
        if self.stream is None:
            sequence = outputs.last_hidden_state
        else:
            sequence = self.stream(outputs.hidden_states[1:], condition.z)  # each layer's output feeds it
            if self.family.final_norm:
                sequence = self.backbone.get_submodule(self.family.final_norm)(sequence)
        pooler = getattr(self.backbone, "pooler", None)
        return sequence, pool(sequence, attention_mask, self.config.pooling, pooler)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        sequence_owner: torch.Tensor | None = None,
        choice_sequences: torch.Tensor | None = None,
        token_labels: torch.Tensor | None = None,
        mlm_positions: torch.Tensor | None = None,
        mlm_labels: torch.Tensor | None = None,
    ) -> CaMtlOutput:
        """A mixed batch of B examples encoded as S sequences (S = B unless a multiple-choice example has
        one sequence per choice): input_ids (S, L); task_ids and labels (B,); ``sequence_owner`` (S,) the
        example of each sequence and ``choice_sequences`` (B, C') the sequence of each choice (-1 past an
        example's last); ``token_labels`` (S, L) for token classification; ``mlm_positions`` (M,) flat
        indices into S x L and ``mlm_labels`` (M,) for masked LM. The collator builds all of them."""
        if task_ids is None:
            raise ValueError("task_ids is required: one id per example, see model.task_index(name)")
        rows = torch.arange(len(task_ids), device=task_ids.device)
        sequence_owner = rows if sequence_owner is None else sequence_owner
        sequence_task = task_ids[sequence_owner]  # (S,)
        sequence, pooled = self.encode(input_ids, attention_mask, token_type_ids, sequence_task)
        batch = HeadInputs(
            pooled=pooled,
            sequence=sequence,
            task_ids=task_ids,
            sequence_task=sequence_task,
            sequence_owner=sequence_owner,
            first_sequence=rows if choice_sequences is None else choice_sequences[:, 0],
            choice_sequences=choice_sequences,
            mlm_positions=mlm_positions,
            word_embeddings=self.backbone.get_input_embeddings().weight
            if self.heads.mlm is not None
            else None,
        )
        outputs = self.heads(batch)
        loss = per_example = None
        if labels is not None:
            per_example = self.heads.loss(outputs, batch, labels, token_labels, mlm_labels)
            loss = reduce_loss(per_example, task_ids, self.heads.loss_weight, self.config.loss_reduction)
        return CaMtlOutput(
            loss=loss,
            example_losses=per_example,
            logits=outputs.logits,
            entropy=self.heads.entropy(outputs, batch, token_labels),
            token_logits=outputs.token_logits,
            mlm_logits=outputs.mlm_logits,
        )
