"""Model loading, LoRA and the LightningModule."""
