"""Scripts around the package (gallery, web page screenshot), run from the project root as
``python -m scripts.<name>``; the package never imports them."""
