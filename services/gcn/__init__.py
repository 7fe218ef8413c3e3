"""Graph convolution: the general weighted-sum form, spatial mean aggregation and Kipf & Welling's GCN."""
