import torch

from reportgen.training.data import collate


def test_collate_pads_views_and_tokens():
    items = [
        {"labels": torch.zeros(14), "images": torch.ones(2, 1, 8, 8), "input_ids": torch.tensor([2, 5, 3])},
        {"labels": torch.ones(14), "images": torch.ones(1, 1, 8, 8), "input_ids": torch.tensor([2, 3])},
    ]
    batch = collate(items, pad_id=0)
    assert batch["images"].shape == (2, 2, 1, 8, 8)
    assert batch["view_mask"].tolist() == [[True, True], [True, False]]
    assert batch["input_ids"].tolist() == [[2, 5, 3], [2, 3, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["images"][1, 1].abs().sum() == 0
