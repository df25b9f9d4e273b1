"""Images: validation and downscaling, vision-model routing for image turns."""
