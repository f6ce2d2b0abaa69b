// placeholder until the metrics tests land
