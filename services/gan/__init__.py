"""GAN family: DCGAN, WGAN / WGAN-GP, Conditional GAN, Pix2Pix, CycleGAN (one module each)."""
