"""Random preservation boxes for training selective generation (the paper's random-box mode)."""
from __future__ import annotations

import torch


def random_boxes(batch: int, height: int, width: int, keep_all_share: float = 0.5,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Random-box preservation maps (B, 1, height, width) of 0/1 (the paper's RB training mode):
    a share of the samples keeps everything (the model then codes whole images too); the others
    keep one box at a uniformly random place, each side a uniformly random 1/4 to 3/4 of the map's."""
    maps = torch.ones(batch, 1, height, width, device=device)
    for sample in range(batch):
        if torch.rand(()) < keep_all_share:
            continue
        box_h = int(torch.randint(max(1, height // 4), max(2, 3 * height // 4 + 1), ()))
        box_w = int(torch.randint(max(1, width // 4), max(2, 3 * width // 4 + 1), ()))
        top = int(torch.randint(0, height - box_h + 1, ()))
        left = int(torch.randint(0, width - box_w + 1, ()))
        maps[sample] = 0
        maps[sample, :, top:top + box_h, left:left + box_w] = 1
    return maps
