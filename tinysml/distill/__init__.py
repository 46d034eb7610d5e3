"""Knowledge distillation: SMLDist's stage, memory and logits levels, the baselines, the pipeline."""
from .stage import StageAdapter, StudentStages, frequency_attention, stage_loss
from .memory import memory_loss, teacher_association, transplant
from .logits import conditional_target, direct_conditional_loss, hinton_kd_loss, smoothed_conditional_loss
from .baselines import attention_map, attention_transfer_loss, fitnet_hint_loss

__all__ = ["StageAdapter", "StudentStages", "frequency_attention", "stage_loss", "memory_loss", "teacher_association",
           "transplant", "conditional_target", "direct_conditional_loss", "hinton_kd_loss", "smoothed_conditional_loss", "attention_map",
           "attention_transfer_loss", "fitnet_hint_loss"]
