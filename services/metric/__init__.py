"""Deep metric learning: Siamese (contrastive) and Triplet networks, evaluation, embedding index, serving."""
