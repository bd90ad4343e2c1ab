"""Right-sizing and cost faces: composition of the usage history, the recommender, the offers and the
approval workflow (``novatune observe|rightsize|cost``, ``/rightsizing``, ``/cost``)."""
