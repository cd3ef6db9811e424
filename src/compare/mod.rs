//! The judge: reads two dump folders and decides, checkpoint by checkpoint. Knows only dumps.
