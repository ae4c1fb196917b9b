"""The film: the chosen takes of a storyboard joined into one MP4, or a timeline.

``join`` (probe clips, join them by remux or re-encode: PyAV) → ``timeline``
(OpenTimelineIO; EDL and FCPXML through its optional adapters) → ``cut`` (which
take of which shot, where its video is, fetching what is missing into the cache)
and ``pick`` (write ``pick: K`` into the storyboard text). Light on import: PyAV
and OpenTimelineIO load only when a film is made.
"""
