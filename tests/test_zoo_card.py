"""Model cards: the Training run section follows the run's metrics, whatever else the card holds."""

from linfdist.models import LinfDistNetConfig
from linfdist.zoo.card import refresh_run_section, write_model_card

RESULTS = {"eps": 0.1, "n": 10, "clean_accuracy": 50.0, "certified_accuracy": 10.0,
           "certified_accuracy_margin": 10.0, "certified_accuracy_ibp": 10.0, "certifier": "test figures"}
CONFIG = LinfDistNetConfig(input_shape=[1, 4, 4], depth=2, width=8)


def _run(epochs, seconds, device):
    return {"epochs": epochs, "wall_seconds": seconds, "devices": [device], "finished": "2026-11-26T04:00:00Z"}


def _sections(text):
    return [line for line in text.splitlines() if line.startswith("## ")]


def test_a_card_without_the_section_gets_it_before_reproduce(tmp_path):
    write_model_card(tmp_path, CONFIG, RESULTS, recipe={"epochs": 3}, command="linfdist train --recipe x")
    refresh_run_section(tmp_path, _run(3, 4000, "some CPU"))
    text = (tmp_path / "README.md").read_text()
    assert _sections(text)[-3:] == ["## Training run", "## Reproduce", "## Training recipe"]
    assert "| wall time | 1 h 06 min" in text and "| some CPU |" in text and "linfdist train --recipe x" in text


def test_the_section_is_replaced_not_repeated(tmp_path):
    write_model_card(tmp_path, CONFIG, RESULTS, run=_run(3, 60, "old CPU"))
    before = (tmp_path / "README.md").read_text()
    refresh_run_section(tmp_path, _run(5, 7200, "new CPU"))
    text = (tmp_path / "README.md").read_text()
    assert _sections(text) == _sections(before) and text.count("## Training run") == 1
    assert "old CPU" not in text and "| new CPU |" in text and "| epochs | 5 |" in text
    assert text.split("## Training run")[0] == before.split("## Training run")[0]


def test_a_fine_tuned_run_names_its_starting_checkpoint(tmp_path):
    write_model_card(tmp_path, CONFIG, RESULTS, run={**_run(10, 360, "some CPU"), "init_from": "base-model"})
    text = (tmp_path / "README.md").read_text()
    assert "| started from | the weights of `base-model`" in text
    write_model_card(tmp_path, CONFIG, RESULTS, run=_run(10, 360, "some CPU"))
    assert "started from" not in (tmp_path / "README.md").read_text()


def test_zoo_cards_follow_the_hubs_conventions():
    """pipeline_tag, a model-index name unique per model (with its ε), base_model on fine-tuned models, and a
    usage section that loads the model by its zoo name."""
    from huggingface_hub import ModelCard

    from linfdist.zoo import bundled_model_dir
    from linfdist.zoo.registry import load_registry

    names = []
    for entry in (e for e in load_registry() if e.bundled):
        card = ModelCard.load(bundled_model_dir(entry.name) / "README.md")
        assert card.data.pipeline_tag == "image-classification" and card.data.library_name == "linfdist"
        assert card.data.base_model == entry.base_model
        names.append(card.data.model_name)
        assert f'linfdist.load_model("{entry.name}")' in card.text and "@inproceedings{zhang2021towards" in card.text
        assert "## Limitations" in card.text
    assert len(set(names)) == len(names), names


def test_a_fine_tuned_models_card_names_its_base_model_in_the_metadata(tmp_path):
    """The Hub's base_model field: written where given (the zoo's fine-tuned models), absent otherwise."""
    from huggingface_hub import ModelCard

    write_model_card(tmp_path, CONFIG, RESULTS, base_model="linfdist/some-base")
    assert ModelCard.load(tmp_path / "README.md").data.base_model == "linfdist/some-base"
    write_model_card(tmp_path, CONFIG, RESULTS)
    assert ModelCard.load(tmp_path / "README.md").data.base_model is None
