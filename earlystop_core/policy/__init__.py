"""The learned stopping policy: ``features`` (computed online), ``learned`` (the rule),
``fit`` (fitting on recorded runs), ``simulate`` (its decisions vectorised over many runs),
``default`` (the generated recommended policy). It sits above the Monitor, below the replay tools.
"""
