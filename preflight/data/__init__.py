"""A user's sample on disk, turned into the tables every later stage reads.

Reading a landed folder in any layout the library accepts -- YOLO or COCO detection labels
(``formats``, ``ingest``) and a classification sample as an ImageFolder or ``labels.csv``, or
object crops cut from a detection sample (``classification_sample``) -- into the images, boxes and
quarantine tables; validating the labels with Great Expectations (``validate``); the pixel
properties and fixed slice bins of a frame (``properties``); file names in any encoding
(``filenames``); the quarantine table and its errors (``errors``); and the landing zone's
complete-batch rule (``landing``). It knows no world: the classes come from the taxonomy, the
slices from the metadata. The synthetic warehouse that writes such folders is
:mod:`preflight.synth`.
"""
