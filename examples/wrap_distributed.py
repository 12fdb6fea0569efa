"""Wrap a torchvision ResNet-18 on an ImageFolder over all ranks: `torchrun --nproc_per_node N examples/wrap_distributed.py DATA OUT KEY`.

The only lines that are about distribution: join the process group torchrun describes, pick this
rank's GPU, and let rank 0 alone write the key and the bundle. ``SafeBox.wrap`` does the rest.
"""

import os
import sys

import torch
import torch.distributed as dist
import torchvision
from torch.utils.data import DataLoader
from torchvision import transforms

from sdbox import SafeBox
from sdbox.distributed import is_main_process


def main(data: str, out: str, key_out: str) -> None:
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo")
    norm = transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    train = torchvision.datasets.ImageFolder(os.path.join(data, "train"), transforms.Compose([transforms.ToTensor(), norm]))
    held = torchvision.datasets.ImageFolder(os.path.join(data, "test"), transforms.Compose([transforms.ToTensor(), norm]))
    model = torchvision.models.resnet18(num_classes=len(train.classes))  # load your trained weights here
    box = SafeBox.wrap(model, DataLoader(train, batch_size=64, shuffle=True), val_loader=DataLoader(held, batch_size=256),
                       epochs=int(os.environ.get("EPOCHS", "10")), lr=0.01,
                       device=f"cuda:{torch.cuda.current_device()}" if cuda else "cpu")
    if is_main_process():  # one key and one bundle, written once
        box.key.save(key_out)
        box.eval().save_pretrained(out)
        print(f"key {box.key.fingerprint[:12]}…, clean {box.wrap_result.clean_acc_after:.1f}%, keyed {box.wrap_result.keyed_acc_after:.1f}%")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
