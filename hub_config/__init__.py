"""GemHub hub-side configuration: the platform file, its loader and the hub config."""
