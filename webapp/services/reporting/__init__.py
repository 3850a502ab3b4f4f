"""Reports and exports: misclassification reports, label exports (CSV, ImageFolder), the report
jobs that build them in the background, server-drawn SVG plots and spreadsheet-safe CSV."""
