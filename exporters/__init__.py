"""tubai exporters: sources that read the hardware, the sampling agent, and the stores."""
