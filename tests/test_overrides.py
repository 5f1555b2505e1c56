from mgc_lightning.train.overrides import Overrides


def test_overrides_give_back_the_options_they_were_read_from_a_repeated_key_last():
    overrides = Overrides.parse(["--trainer.max_epochs", 15, "--model.init_args.lr=0.002", "--trainer.max_epochs", 3])
    assert overrides.items == (("model.init_args.lr", "0.002"), ("trainer.max_epochs", "3"))
    assert overrides.arguments() == ("--model.init_args.lr", "0.002", "--trainer.max_epochs", "3")
    assert overrides.with_value("model.init_args.lr", "0.1").keys() == ("trainer.max_epochs", "model.init_args.lr")
