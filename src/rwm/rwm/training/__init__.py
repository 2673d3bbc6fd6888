"""World-model training: autoregressive and teacher-forced losses, the trainer."""
