"""Running an instance: online backup and restore, ``flask doctor``'s checks and repairs, the demo
dataset, and the small job kinds that check the job machinery."""
