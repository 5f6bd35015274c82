"""The trained models: the learner template, the retriever, the generator, and the strategies they share."""
