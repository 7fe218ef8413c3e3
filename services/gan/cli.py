"""`dojo gan <verb>`."""

from services.gan import train

COMMANDS = {
    "train": (train.main, "train one model: --model dcgan|wgan|wgan-gp|cgan|pix2pix|cyclegan --run-dir D"),
}
