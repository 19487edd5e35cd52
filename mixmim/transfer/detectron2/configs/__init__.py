"""LazyConfig files of the paper recipes (load with ``detectron2.config.LazyConfig.load(path)``)."""
