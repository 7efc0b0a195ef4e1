"""Records, task adapters, preview strategies, chat formatting and the LightningDataModule."""
