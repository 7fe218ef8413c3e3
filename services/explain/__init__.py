"""Explainability: CAM, Grad-CAM, LIME and SHAP behind one explainer interface, served on Ray Serve."""
