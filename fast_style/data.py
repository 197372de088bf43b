"""A recursive image-folder dataset that tolerates bad files, and its LightningDataModule."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from fast_style.errors import FastStyleError
from fast_style.images import IMAGE_EXTENSIONS, folder_images, load_image
from fast_style.schema import DataConfig, check_ranges

__all__ = ["ImageFolderDataset", "StyleDataModule", "collate_skip_bad", "find_images"]

log = logging.getLogger(__name__)


def find_images(root: str | os.PathLike[str]) -> list[Path]:
    """All image files below ``root`` (recursive), sorted; a clear error if there are none."""
    root = Path(root).expanduser()
    if not root.exists():
        raise FastStyleError(f"data folder not found: {root}")
    if not root.is_dir():
        raise FastStyleError(f"data.root must be a folder of images, got a file: {root}")
    files = folder_images(root)
    if not files:
        raise FastStyleError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}")
    return files


class ImageFolderDataset(Dataset):
    """Images below a folder, resized (short side to ``resize_size``, default ``image_size``) and
    cropped to ``image_size`` squares in [0, 1].

    Files are read like every other input (``load_image``): EXIF orientation applied, 16-bit
    images scaled to 8 bits.

    An unreadable file yields its index instead of an image, so one bad JPEG in COCO does not end
    a long run; ``collate_skip_bad`` drops it and reports it to the training loop, which counts it.
    """

    def __init__(
        self,
        files: Sequence[Path],
        image_size: int,
        random_crop: bool = True,
        resize_size: int | None = None,
    ) -> None:
        self.files = list(files)
        crop = transforms.RandomCrop(image_size) if random_crop else transforms.CenterCrop(image_size)
        self.transform = transforms.Compose(
            [
                transforms.Resize(
                    resize_size or image_size,
                    interpolation=transforms.InterpolationMode.BILINEAR,
                    antialias=True,
                ),
                crop,
                transforms.ToTensor(),
            ]
        )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor | int:
        path = self.files[index]
        try:
            rgb = load_image(path)
        except Exception as exc:  # truncated, corrupt, unsupported: skip and count
            log.warning("skipping unreadable image %s (%s)", path, exc)
            return index
        return self.transform(rgb)


def collate_skip_bad(items: list[torch.Tensor | int]) -> tuple[torch.Tensor | None, list[int]]:
    """Stack the readable images; also return the dataset indices of the unreadable ones."""
    good = [x for x in items if isinstance(x, torch.Tensor)]
    bad = [x for x in items if not isinstance(x, torch.Tensor)]
    return (torch.stack(good) if good else None), bad


class StyleDataModule(pl.LightningDataModule):
    """Training images from ``root`` plus a fixed few sample images for TensorBoard."""

    def __init__(
        self,
        root: str,
        image_size: int = DataConfig.image_size,
        batch_size: int = DataConfig.batch_size,
        num_workers: int = DataConfig.num_workers,
        num_sample_images: int = DataConfig.num_sample_images,
        max_bad_fraction: float = DataConfig.max_bad_fraction,
        pin_memory: bool | str = DataConfig.pin_memory,
        persistent_workers: bool = DataConfig.persistent_workers,
        resize_size: int | None = DataConfig.resize_size,
    ) -> None:
        """Every argument and its default: ``DataConfig`` (``pin_memory="auto"``: on with CUDA)."""
        super().__init__()
        check_ranges(DataConfig, locals(), "data")
        if resize_size is not None and resize_size < image_size:
            raise FastStyleError(
                f"data.resize_size must be at least data.image_size ({image_size}), got {resize_size}"
            )
        if isinstance(pin_memory, str):
            pin_memory = torch.cuda.is_available()
        self.root = root
        self.image_size = image_size
        self.resize_size = resize_size
        self.num_sample_images = num_sample_images
        self.max_bad_fraction = max_bad_fraction
        self.files = find_images(root)
        self.train_set = ImageFolderDataset(self.files, image_size, random_crop=True, resize_size=resize_size)
        self.loader_options: dict[str, Any] = {
            "batch_size": batch_size,
            "shuffle": True,
            "num_workers": num_workers,
            "collate_fn": collate_skip_bad,
            "pin_memory": pin_memory,
            "persistent_workers": persistent_workers and num_workers > 0,
            "drop_last": len(self.train_set) >= batch_size,
        }
        """What ``train_dataloader`` passes to the ``DataLoader`` besides the dataset."""

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, **self.loader_options)

    def sample_images(self) -> torch.Tensor:
        """The first readable ``num_sample_images`` images, center-cropped: the same every call."""
        dataset = ImageFolderDataset(self.files, self.image_size, random_crop=False)
        picked: list[torch.Tensor] = []
        for index in range(len(dataset)):
            if len(picked) >= self.num_sample_images:
                break
            image = dataset[index]
            if isinstance(image, torch.Tensor):
                picked.append(image)
        if not picked:
            raise FastStyleError(f"none of the images under {self.root} could be read")
        return torch.stack(picked)
