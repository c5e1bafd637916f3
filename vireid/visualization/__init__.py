"""Pictures people want: ranked lists, attention maps, curves."""
