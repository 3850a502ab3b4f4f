"""Admin views' business: deleting and archiving datasets, the image browser, and jobs described
as a person would read them."""
