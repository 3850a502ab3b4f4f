"""Admin views' business: deleting and archiving datasets, the image browser, jobs described as a
person would read them, and what the overview and the dataset pages show."""
