"""Scratch: 'sampled' copies. The table holds the originals and K perturbed copies, but each
epoch trains on a random 1/(K+1) of the batches, so a fold takes the same number of
optimisation steps (and the same lr schedule) as without copies; only what the steps see
changes. Import and call install(K + 1) before training."""
import ptssnn.training.trainer as trainer

_orig_batches = trainer.bucketed_batches
_orig_init = trainer._FitLoop.__init__


def install(share: int) -> None:
    def batches(lengths, batch_size, *, generator=None, jitter=0.0):
        out = _orig_batches(lengths, batch_size, generator=generator, jitter=jitter)
        if generator is None:  # evaluation order: everything
            return out
        return out[: -(-len(out) // share)]  # batch order is shuffled: a random share

    def init(self, model, train_data, config, *args, **kwargs):
        _orig_init(self, model, train_data, config, *args, **kwargs)
        steps_per_epoch = -(-(-(-len(train_data) // config.batch_size)) // share)
        self.total_steps = steps_per_epoch * config.max_epochs
        self.warmup_steps = round(config.warmup_epochs * steps_per_epoch)

    trainer.bucketed_batches = batches
    trainer._FitLoop.__init__ = init
